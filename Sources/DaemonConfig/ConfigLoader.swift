import ConfigTree
import Glibc
import Platform

/// Reads the configuration the way DESIGN.md §8 describes: the main file, then every
/// `conf.d/*.yaml` beside it in name order. A later file's keys override earlier ones (mappings
/// are merged key by key), except the `routes` and `plugins` lists, which are appended.
public enum ConfigLoader {
    public static let defaultPath = "/etc/bitnetd/bitnetd.yaml"

    /// Loads and validates. Throws `ConfigUnreadable` (a file cannot be read) or `ConfigErrors`
    /// (everything wrong, sorted by position).
    public static func load(
        path: String = defaultPath, environment: @escaping YAMLParser.Environment = YAMLParser.processEnvironment
    ) throws -> BitnetdConfig {
        var files = [path]
        files += confDFiles(beside: path)
        var errors: [ConfigError] = []
        var merged: ConfigNode?
        // After a syntax error the tree is incomplete; decoding it would report phantom problems.
        var syntaxError = false
        for file in files {
            let text: String
            switch try readTextFile(file) {
            case .success(let t): text = t
            case .failure(let e):
                errors.append(e)
                syntaxError = true
                continue
            }
            // Swift 6.3's optimizer crashes on a typed catch that assigns a destructured tuple
            // (SIL ownership verifier, release builds); a Result sidesteps it.
            let result = Result { try YAMLParser.parse(text, file: file, environment: environment) }
            guard case .success(let (root, parseErrors)) = result else {
                if case .failure(let error) = result {
                    guard let e = error as? ConfigErrors else { throw error }
                    errors += e.errors
                }
                syntaxError = true
                continue
            }
            errors += parseErrors
            if !root.isNull, case .mapping = root.content {} else if !root.isNull {
                errors.append(ConfigError(root.mark, "", "expected a mapping at the top of the file, got \(root.kindDescription)"))
                continue
            }
            merged = merged.map { merge($0, root, path: "") } ?? root
        }
        if syntaxError { throw ConfigErrors(errors) }
        let context = ConfigDiagnostics(errors)
        let root = merged ?? ConfigNode(.scalar("", plain: true), mark: Mark(file: path, line: 1, column: 1))
        let config = BitnetdConfig.decode(root, files: files, diagnostics: context)
        if !context.errors.isEmpty { throw ConfigErrors(context.errors) }
        return config
    }

    /// `conf.d/*.yaml` (and `*.yml`) beside `path`, sorted by name; empty if the folder is absent.
    public static func confDFiles(beside path: String) -> [String] {
        let dir: String
        if let slash = path.lastIndex(of: "/") {
            dir = String(path[..<slash]) + "/conf.d"
        } else {
            dir = "conf.d"
        }
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasPrefix(".") { continue }
            if name.hasSuffix(".yaml") || name.hasSuffix(".yml") { names.append(name) }
        }
        return names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }.map { dir + "/" + $0 }
    }

    /// Merges `b` over `a`.
    static func merge(_ a: ConfigNode, _ b: ConfigNode, path: String) -> ConfigNode {
        guard case .mapping(var entries) = a.content, case .mapping(let over) = b.content else { return b }
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() where index[e.key] == nil { index[e.key] = i }
        for entry in over {
            if let i = index[entry.key] {
                let old = entries[i].value
                if path.isEmpty, entry.key == "routes" || entry.key == "plugins",
                   case .sequence(let x) = old.content, case .sequence(let y) = entry.value.content {
                    entries[i].value = ConfigNode(.sequence(x + y), mark: old.mark)
                } else if case .mapping = old.content, case .mapping = entry.value.content {
                    entries[i].value = merge(old, entry.value, path: joinPath(path, entry.key))
                } else {
                    entries[i] = entry
                }
            } else {
                index[entry.key] = entries.count
                entries.append(entry)
            }
        }
        return ConfigNode(.mapping(entries), mark: a.mark)
    }

    /// Reads a whole file as UTF-8 text; text that is not UTF-8 is a config error at the line and
    /// column (in characters, as libyaml counts them) of the first invalid byte.
    public static func readTextFile(_ path: String) throws(ConfigUnreadable) -> Result<String, ConfigError> {
        let limit = 16 << 20
        let bytes: [UInt8]
        do {
            bytes = try readFile(path, maxBytes: limit)
        } catch {
            throw ConfigUnreadable(path: path, errno: error.code, reason: errnoDescription(error.code))
        }
        if bytes.count > limit {
            throw ConfigUnreadable(path: path, errno: EFBIG, reason: "file is larger than 16 MiB")
        }
        if let text = String(validating: bytes, as: UTF8.self) { return .success(text) }
        let (offset, line, column) = firstInvalidUTF8(bytes)
        return .failure(ConfigError(Mark(file: path, line: line, column: column), "",
                                    "the file is not valid UTF-8 (byte 0x\(String(bytes[offset], radix: 16, uppercase: true)) at offset \(offset))"))
    }

    /// Offset, 1-based line and column (in characters) of the first byte that is not valid UTF-8.
    static func firstInvalidUTF8(_ b: [UInt8]) -> (Int, Int, Int) {
        var i = 0, line = 1, column = 1
        while i < b.count {
            let c = b[i]
            let n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0
            guard n > 0, i + n <= b.count, String(validating: b[i..<(i + n)], as: UTF8.self) != nil else {
                return (i, line, column)
            }
            if c == 0x0A { line += 1; column = 1 } else { column += 1 }
            i += n
        }
        return (max(0, b.count - 1), line, column)
    }
}

/// The configuration file (or a conf.d file) could not be read at all.
public struct ConfigUnreadable: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var errno: Int32
    public var reason: String

    public var description: String { "\(path): cannot read: \(reason)" }
}
