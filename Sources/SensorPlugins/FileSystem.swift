import Glibc

/// Thin wrappers over the few file calls the built-in plugins need, with errors that name the
/// path and the errno text (`read_failed: /sys/class/thermal/thermal_zone1/temp: Is a directory`).
///
/// Every hardware path is resolved under a configurable root (`root:` in a plugin's section,
/// default `/`), so tests run against fake `/sys` and `/proc` trees (STYLE.md guideline 9).
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

/// Reads a whole small file (sysfs and procfs files report size 0, so it reads until EOF).
/// Throws `read_failed` with the errno text.
public func readSmallFile(_ path: String, maxBytes: Int = 1 << 20) throws(PluginError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw PluginError("read_failed", "\(path): \(errnoDescription(errno))") }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while out.count < maxBytes {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw PluginError("read_failed", "\(path): \(errnoDescription(errno))")
        }
        if n == 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// A small text file with surrounding whitespace removed.
public func readSmallTextFile(_ path: String) throws(PluginError) -> String {
    let bytes = try readSmallFile(path)
    let text = String(decoding: bytes, as: UTF8.self)
    var start = text.startIndex, end = text.endIndex
    while start < end, text[start].isWhitespace { start = text.index(after: start) }
    while end > start, text[text.index(before: end)].isWhitespace { end = text.index(before: end) }
    return String(text[start..<end])
}

/// Names in a directory (without `.` and `..`), sorted; throws `read_failed` when it cannot be
/// listed.
public func listDirectory(_ path: String) throws(PluginError) -> [String] {
    guard let dir = opendir(path) else { throw PluginError("read_failed", "\(path): \(errnoDescription(errno))") }
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
