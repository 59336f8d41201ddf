import Glibc
import JSONValue
import Platform
import SensorPlugins
import Synchronization

/// `file-tail`: readings from lines appended to a file — a data logger's CSV-free output, a
/// script's JSON lines, `key=value` log lines.
///
/// Polled every `interval_s`. Starts at the end of the file (only lines written after start-up
/// count) unless `from_beginning: true`. Survives rotation: when the path names a new file (inode
/// changed, e.g. logrotate's rename + create) the rest of the old file is read first, then the new
/// one from its start; when the file shrinks (truncation, logrotate's `copytruncate`) reading
/// restarts at its beginning. A missing file is reported and waited for; a file that appears
/// later is read from its beginning. Line formats: `ReadingLine` (JSON object, envelope or flat;
/// or key=value). Malformed lines are reported (`bad_line`) and skipped.
public final class FileTailPlugin: SampledSensorPlugin {
    public static let id = "file-tail"

    public let settings: PluginSettings
    public let path: String
    public let format: ReadingLine.Format
    public let fromBeginning: Bool
    public let topicSuffix: String
    public let maxLineBytes: Int
    /// At most this much is read per sample; a backlog is worked off over the next samples.
    public let maxBytesPerSample: Int

    private struct Tail {
        var fd: Int32 = -1
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var offset: Int = 0
        /// Set after the first attempt to open: only the file found at start-up is read from its end.
        var firstAttemptDone = false
        var splitter: LineSplitter
    }

    private let state: Mutex<Tail>

    public init(settings: PluginSettings, path: String, format: ReadingLine.Format = .auto, fromBeginning: Bool = false,
                topicSuffix: String = "", maxLineBytes: Int = 65_536, maxBytesPerSample: Int = 4 << 20) {
        self.settings = settings
        self.path = path
        self.format = format
        self.fromBeginning = fromBeginning
        self.topicSuffix = topicSuffix
        self.maxLineBytes = maxLineBytes
        self.maxBytesPerSample = maxBytesPerSample
        state = Mutex(Tail(splitter: LineSplitter(maxLineBytes: maxLineBytes)))
    }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    public static let factory = PluginFactory(
        id: id, summary: "readings from lines appended to a file (JSON or key=value), across rotation", defaultInterval: 1
    ) { settings, options in
        let path = options.requiredString("path")
        if let path, !path.hasPrefix("/") { options.error("path", "expected an absolute path, got '\(path)'") }
        let format = options.choice("format", ReadingLine.Format.allCases.map(\.rawValue), default: "auto")
        let fromBeginning = options.bool("from_beginning", default: false)
        let suffix = options.string("topic_suffix", default: "")
        if let problem = ReadingLine.topicSuffixProblem(suffix) { options.error("topic_suffix", problem) }
        let maxLine = options.int("max_line_bytes", default: 65_536, range: 256...(16 << 20))
        guard let path else { return nil }
        return FileTailPlugin(settings: settings, path: path, format: ReadingLine.Format(rawValue: format) ?? .auto,
                              fromBeginning: fromBeginning, topicSuffix: suffix, maxLineBytes: maxLine)
    }

    public func sample(at time: Double) -> PluginSample {
        var pieces: [LineSplitter.Piece] = []
        var errors: [PluginError] = []
        state.withLock { tail in
            if tail.fd < 0 {
                let atEnd = !tail.firstAttemptDone && !fromBeginning
                tail.firstAttemptDone = true
                do throws(PluginError) {
                    try open(&tail, atEnd: atEnd)
                } catch {
                    errors.append(error)
                    return
                }
            }
            var budget = maxBytesPerSample
            // Truncated in place (copytruncate): start over at the beginning.
            var st = stat()
            if fstat(tail.fd, &st) == 0, st.st_size < tail.offset {
                tail.offset = 0
                tail.splitter.reset()
            }
            if let e = drain(&tail, &pieces, &budget) { errors.append(e) }
            guard budget > 0 else { return }
            // Replaced (rename + create): finish the old file, then follow the new one.
            var now = stat()
            if stat(path, &now) == 0, UInt64(now.st_dev) != tail.device || UInt64(now.st_ino) != tail.inode {
                pieces += tail.splitter.finish()
                close(tail.fd)
                tail.fd = -1
                do throws(PluginError) {
                    try open(&tail, atEnd: false)
                } catch {
                    errors.append(error)
                    return
                }
                if let e = drain(&tail, &pieces, &budget) { errors.append(e) }
            }
        }
        var sample = PluginSample(errors: errors)
        for piece in pieces {
            switch piece {
            case .line(let bytes):
                do throws(ReadingLine.Problem) {
                    if let r = try ReadingLine.parse(bytes, format: format, defaultSuffix: topicSuffix, time: time) {
                        sample.readings.append(r)
                    }
                } catch {
                    sample.errors.append(PluginError("bad_line", "\(path): \(error.message): '\(excerpt(bytes))'"))
                }
            case .tooLong(let prefix):
                sample.errors.append(PluginError("bad_line", "\(path): line longer than \(maxLineBytes) bytes skipped: '\(excerpt(prefix, limit: 60))'"))
            }
        }
        return sample
    }

    private func open(_ tail: inout Tail, atEnd: Bool) throws(PluginError) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw PluginError("read_failed", "\(path): \(errnoDescription(errno))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw PluginError("read_failed", "\(path): \(errnoDescription(e))")
        }
        if st.st_mode & 0o170000 == 0o040000 {
            close(fd)
            throw PluginError("read_failed", "\(path): is a directory")
        }
        tail.fd = fd
        tail.device = UInt64(st.st_dev)
        tail.inode = UInt64(st.st_ino)
        tail.offset = atEnd ? Int(st.st_size) : 0
        tail.splitter.reset()
    }

    /// Reads from the offset to the end of the file (or until the budget is spent).
    private func drain(_ tail: inout Tail, _ pieces: inout [LineSplitter.Piece], _ budget: inout Int) -> PluginError? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while budget > 0 {
            let want = min(chunk.count, budget)
            let n = chunk.withUnsafeMutableBytes { pread(tail.fd, $0.baseAddress, want, off_t(tail.offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return nil }
                return PluginError("read_failed", "\(path): \(errnoDescription(errno))")
            }
            if n == 0 { return nil }
            tail.offset += n
            budget -= n
            pieces += tail.splitter.push(chunk[0..<n])
        }
        return nil
    }
}
