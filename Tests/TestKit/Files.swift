import Foundation
import Glibc

/// A fresh directory `/tmp/bitnetd-<label>-XXXXXX`, removed by `remove()` or when the last
/// reference goes.
public final class TempDir: Sendable {
    public let path: String

    public init(_ label: String = "test") {
        var template = Array("/tmp/bitnetd-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit { remove() }

    public func file(_ relative: String) -> String { path + "/" + relative }

    /// Writes `text` to `relative` (creating folders), optionally executable; returns the full path.
    @discardableResult
    public func write(_ relative: String, _ text: String, executable: Bool = false) -> String {
        let full = file(relative)
        if let slash = full.lastIndex(of: "/") {
            try? FileManager.default.createDirectory(atPath: String(full[..<slash]), withIntermediateDirectories: true)
        }
        precondition(FileManager.default.createFile(atPath: full, contents: Data(text.utf8)), "cannot write \(full)")
        if executable { chmod(full, 0o755) }
        return full
    }

    public func append(_ relative: String, _ text: String) {
        guard let h = FileHandle(forWritingAtPath: file(relative)) else { preconditionFailure("cannot open \(relative)") }
        defer { try? h.close() }
        h.seekToEndOfFile()
        h.write(Data(text.utf8))
    }

    /// Copies a fixture tree into this directory (so a test may change it).
    public func copyTree(from source: String, to relative: String = "root") throws -> String {
        let dest = file(relative)
        try FileManager.default.copyItem(atPath: source, toPath: dest)
        return dest
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// `Fixtures/<name>` beside the test file that calls it.
public func fixture(_ name: String, file: String = #filePath) -> String {
    URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("Fixtures").appendingPathComponent(name).path
}

/// The repository's bundled demo model (models/demo/demo.gguf): a trained decision model with
/// another name and file than the generated test model.
public let demoModel: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/TestKit/Files.swift → the repository
    return url.path + "/models/demo/demo.gguf"
}()

/// Writes bytes to a file (tests only; traps on failure).
public func writeBytes(_ bytes: [UInt8], to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    defer { close(fd) }
    var done = 0
    bytes.withUnsafeBytes { buf in
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            precondition(n > 0)
            done += n
        }
    }
}

public func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

/// Offset of the first occurrence of `needle` in `bytes`.
public func offset(of needle: [UInt8], in bytes: [UInt8], from: Int = 0) -> Int? {
    guard needle.count <= bytes.count else { return nil }
    var i = from
    while i + needle.count <= bytes.count {
        if bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle { return i }
        i += 1
    }
    return nil
}

public func offset(of s: String, in bytes: [UInt8], from: Int = 0) -> Int? {
    offset(of: Array(s.utf8), in: bytes, from: from)
}

/// Little-endian stores into a byte array.
public func store<T: FixedWidthInteger>(_ v: T, at off: Int, in bytes: inout [UInt8]) {
    withUnsafeBytes(of: v.littleEndian) { raw in
        for (i, b) in raw.enumerated() { bytes[off + i] = b }
    }
}

/// The small GGUF fixture for reader tests: a BitNet architecture, metadata of every scalar
/// type, string and integer arrays, and tensors of F32 and I2_S.
