import Glibc

/// Thin wrappers over the few file calls the daemon and the built-in plugins need, with errors
/// that name the path and the errno text (`/sys/class/thermal/thermal_zone1/temp: Is a directory`).
///
/// Hardware paths are resolved under a configurable root (`root:` in a plugin's section, default
/// `/`), so tests run against fake `/sys` and `/proc` trees (STYLE.md guideline 9).
public struct FileSystemRoot: Sendable, Equatable {
    /// Absolute or relative directory; `/` for the real system.
    public let root: String

    public init(_ root: String = "/") {
        var r = root
        while r.count > 1, r.hasSuffix("/") { r.removeLast() }
        self.root = r.isEmpty ? "/" : r
    }

    /// `root` joined with an absolute path, e.g. `/tmp/fake` + `/proc/stat`.
    public func path(_ absolute: String) -> String {
        let tail = absolute.hasPrefix("/") ? String(absolute.dropFirst()) : absolute
        return root == "/" ? "/" + tail : root + "/" + tail
    }
}

/// Reads a whole file, at most `maxBytes` of it (sysfs and procfs files report size 0, so it
/// reads until EOF). A file longer than `maxBytes` comes back cut at `maxBytes + 1` bytes, so the
/// caller can tell "too large" from "exactly the limit".
public func readFile(_ path: String, maxBytes: Int = 1 << 20) throws(SystemError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SystemError("open", path: path, code: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while out.count <= maxBytes {
        let want = min(chunk.count, maxBytes + 1 - out.count)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError("read", path: path, code: errno)
        }
        if n == 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// A small text file with surrounding whitespace removed (invalid UTF-8 repaired).
public func readSmallTextFile(_ path: String) throws(SystemError) -> String {
    let bytes = try readFile(path)
    let text = String(decoding: bytes, as: UTF8.self)
    var start = text.startIndex, end = text.endIndex
    while start < end, text[start].isWhitespace { start = text.index(after: start) }
    while end > start, text[text.index(before: end)].isWhitespace { end = text.index(before: end) }
    return String(text[start..<end])
}

/// Names in a directory (without `.` and `..`), sorted.
public func listDirectory(_ path: String) throws(SystemError) -> [String] {
    guard let dir = opendir(path) else { throw SystemError("opendir", path: path, code: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
