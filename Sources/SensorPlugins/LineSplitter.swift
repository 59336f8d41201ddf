/// Cuts a byte stream (a pipe, a growing file) into lines, with a cap on line length so a program
/// that prints megabytes without a newline cannot exhaust memory.
///
/// An over-long line is reported once (`.tooLong`, with its first bytes) and everything up to the
/// next newline is discarded.
public struct LineSplitter: Sendable {
    public enum Piece: Sendable, Equatable {
        case line([UInt8])
        /// A line longer than `maxLineBytes`; the bytes are its beginning, for the message.
        case tooLong(prefix: [UInt8])
    }

    public let maxLineBytes: Int
    private var buffer: [UInt8] = []
    private var discarding = false

    public init(maxLineBytes: Int = 65_536) {
        precondition(maxLineBytes > 0)
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes held back because their line has not ended yet.
    public var pendingByteCount: Int { buffer.count }

    /// Feeds bytes; returns the lines they complete (without `\n`, and without a `\r` before it).
    public mutating func push(_ bytes: [UInt8]) -> [Piece] {
        bytes.withUnsafeBufferPointer { push($0) }
    }

    public mutating func push(_ bytes: ArraySlice<UInt8>) -> [Piece] {
        bytes.withUnsafeBufferPointer { push($0) }
    }

    /// Works a newline at a time with bulk copies (a flood of data costs a scan and a copy per
    /// byte, not a generic iterator step), and keeps at most `maxLineBytes + 1` bytes.
    public mutating func push(_ bytes: UnsafeBufferPointer<UInt8>) -> [Piece] {
        var pieces: [Piece] = []
        var start = 0
        while start < bytes.count {
            let rest = UnsafeBufferPointer(rebasing: bytes[start...])
            let nl = rest.firstIndex(of: 0x0A).map { start + ($0 - rest.startIndex) }
            let end = nl ?? bytes.count
            if !discarding {
                let room = maxLineBytes + 1 - buffer.count
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<min(end, start + max(0, room))]))
                if buffer.count > maxLineBytes {
                    pieces.append(.tooLong(prefix: Array(buffer.prefix(80))))
                    buffer.removeAll(keepingCapacity: false)
                    discarding = true
                }
            }
            guard let nl else { break }
            if discarding {
                discarding = false
            } else {
                if buffer.last == 0x0D { buffer.removeLast() }
                pieces.append(.line(buffer))
            }
            buffer.removeAll(keepingCapacity: true)
            start = nl + 1
        }
        return pieces
    }

    /// At end of input: the unterminated last line, if any. Resets the splitter.
    public mutating func finish() -> [Piece] {
        defer {
            buffer.removeAll()
            discarding = false
        }
        if discarding || buffer.isEmpty { return [] }
        return [.line(buffer)]
    }

    /// Forgets any partial line (after a truncation).
    public mutating func reset() {
        buffer.removeAll()
        discarding = false
    }
}

/// A line quoted in an error message: at most `limit` characters, invalid UTF-8 replaced.
public func excerpt(_ bytes: some Collection<UInt8>, limit: Int = 120) -> String {
    let text = String(decoding: Array(bytes), as: UTF8.self)
    if text.count <= limit { return text }
    return String(text.prefix(limit)) + "…"
}
