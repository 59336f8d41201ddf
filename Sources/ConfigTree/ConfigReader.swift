/// A typed view of one mapping of the configuration tree: the daemon's sections and each plugin's
/// options are read through it.
///
/// Each accessor returns the value (or its default) and records a problem in `diagnostics`
/// instead of throwing, so a check reports every error of a file at once
/// (`FILE:LINE:COL: plugins[2].interval_s: expected 0.1...86400, got 0`). Unknown keys are
/// reported with a did-you-mean, in one of two ways: against a `known` list given up front (the
/// daemon's fixed schema), or — without one — after decoding by `reportUnknownKeys()`, against the
/// keys the accessors asked for (a plugin declares its keys simply by reading them).
///
/// Not thread-safe: it lives while one section is decoded.
public final class ConfigReader {
    /// The key path of the mapping, e.g. `mqtt.tls` or `plugins[2]`.
    public let path: String
    /// The mark of the mapping (or of its parent's key when the mapping is absent).
    public let mark: Mark
    public let diagnostics: ConfigDiagnostics
    /// False when the node was present but not a mapping (already reported).
    public let isValid: Bool
    private var entries: [String: ConfigEntry] = [:]
    private var order: [ConfigEntry] = []
    private var consumed: Set<String> = []

    /// `known`: the keys this mapping may have; others are reported now. Nil: report them later
    /// with `reportUnknownKeys()`.
    public init(_ node: ConfigNode?, path: String, parentMark: Mark? = nil, known: [String]? = nil,
                diagnostics: ConfigDiagnostics = ConfigDiagnostics()) {
        self.path = path
        self.diagnostics = diagnostics
        self.mark = node?.mark ?? parentMark ?? Mark(file: "", line: 0, column: 0)
        guard let node, !node.isNull else {
            isValid = true
            return
        }
        guard case .mapping(let list) = node.content else {
            diagnostics.error(node.mark, path, "expected a mapping, got \(node.kindDescription)")
            isValid = false
            return
        }
        isValid = true
        for entry in list {
            if let known, !known.contains(entry.key) {
                var message = "unknown key '\(entry.key)'"
                if let s = suggestion(for: entry.key, among: known) { message += "; did you mean '\(s)'?" }
                diagnostics.error(entry.keyMark, joinPath(path, entry.key), message)
                continue
            }
            entries[entry.key] = entry
            order.append(entry)
        }
    }

    /// The problems recorded so far (by this reader and every reader sharing its diagnostics).
    public var errors: [ConfigError] { diagnostics.errors }

    // MARK: Positions and problems

    public func keyPath(_ key: String) -> String { joinPath(path, key) }

    /// The mark of a key's value, or of this mapping when absent.
    public func markOf(_ key: String) -> Mark { entries[key]?.value.mark ?? mark }
    /// The mark of a key itself, or of this mapping when absent.
    public func keyMarkOf(_ key: String) -> Mark { entries[key]?.keyMark ?? mark }

    /// Records a problem at `key`'s value (or at the mapping when `key` is nil or absent).
    public func error(_ key: String?, _ message: String) {
        guard let key else {
            diagnostics.error(mark, path, message)
            return
        }
        diagnostics.error(markOf(key), keyPath(key), message)
    }

    /// Records a problem at an explicit position, e.g. one item of a list.
    public func error(at mark: Mark, path: String, _ message: String) {
        diagnostics.error(mark, path, message)
    }

    /// "required key is missing" (unless the mapping itself was not a mapping).
    public func missing(_ key: String) {
        guard isValid else { return }
        diagnostics.error(mark, keyPath(key), "required key is missing")
    }

    /// Reports every key no accessor asked for (readers made without a `known` list).
    public func reportUnknownKeys() {
        let known = consumed.sorted()
        for entry in order where !consumed.contains(entry.key) {
            var message = "unknown key '\(entry.key)'"
            if let s = suggestion(for: entry.key, among: known) { message += "; did you mean '\(s)'?" }
            diagnostics.error(entry.keyMark, keyPath(entry.key), message)
        }
    }

    // MARK: Values

    /// The raw node of a key (null counts as absent). Marks the key as known.
    public func node(_ key: String) -> ConfigNode? {
        consumed.insert(key)
        guard let n = entries[key]?.value, !n.isNull else { return nil }
        return n
    }

    public func has(_ key: String) -> Bool { node(key) != nil }

    /// A nested mapping, sharing this reader's diagnostics.
    public func map(_ key: String, known: [String]? = nil) -> ConfigReader {
        consumed.insert(key)
        return ConfigReader(entries[key]?.value, path: keyPath(key), parentMark: keyMarkOf(key), known: known,
                            diagnostics: diagnostics)
    }

    /// The text of a scalar, or nil (absent or null); reports non-scalars.
    private func scalar(_ key: String, expected: String) -> (String, Mark)? {
        guard let n = node(key) else { return nil }
        guard case .scalar(let s, _) = n.content else {
            error(key, "expected \(expected), got \(n.kindDescription)")
            return nil
        }
        return (s, n.mark)
    }

    public func string(_ key: String, required: Bool = false) -> String? {
        guard let (s, _) = scalar(key, expected: "a string") else {
            if required && node(key) == nil { missing(key) }
            return nil
        }
        return s
    }

    public func string(_ key: String, default value: String) -> String {
        string(key) ?? value
    }

    /// A string that must be present (reports "required key is missing").
    public func requiredString(_ key: String) -> String? { string(key, required: true) }

    public func int(_ key: String, default value: Int, range: ClosedRange<Int>) -> Int {
        guard let (s, _) = scalar(key, expected: "an integer") else { return value }
        guard let v = parseInt(s) else {
            error(key, "expected an integer, got '\(s)'")
            return value
        }
        guard range.contains(v) else {
            error(key, "expected \(range.lowerBound)...\(range.upperBound), got \(v)")
            return value
        }
        return v
    }

    public func double(_ key: String, default value: Double, range: ClosedRange<Double>) -> Double {
        guard let (s, _) = scalar(key, expected: "a number") else { return value }
        guard let v = Double(s), v.isFinite else {
            error(key, "expected a number, got '\(s)'")
            return value
        }
        guard range.contains(v) else {
            error(key, "expected \(format(range.lowerBound))...\(format(range.upperBound)), got \(format(v))")
            return value
        }
        return v
    }

    public func bool(_ key: String, default value: Bool) -> Bool {
        guard let (s, _) = scalar(key, expected: "true or false") else { return value }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            error(key, "expected true or false, got '\(s)'")
            return value
        }
    }

    /// One of a fixed set of words.
    public func choice(_ key: String, _ allowed: [String], default value: String) -> String {
        guard let (s, _) = scalar(key, expected: "one of \(allowed.joined(separator: ", "))") else { return value }
        guard allowed.contains(s) else {
            var message = "expected one of \(allowed.joined(separator: ", ")); got '\(s)'"
            if let hint = suggestion(for: s, among: allowed) { message += "; did you mean '\(hint)'?" }
            error(key, message)
            return value
        }
        return s
    }

    /// A list of strings; a single scalar is accepted as a one-element list.
    public func stringList(_ key: String) -> [String]? {
        stringItems(key)?.map(\.value)
    }

    /// A list of strings with the mark of each item, for errors about one item
    /// (`error(at: item.mark, path: "\(keyPath(key))[\(i)]", …)`).
    public func stringItems(_ key: String) -> [(value: String, mark: Mark)]? {
        guard let n = node(key) else { return nil }
        switch n.content {
        case .scalar(let s, _):
            return [(s, n.mark)]
        case .mapping:
            error(key, "expected a list of strings, got a mapping")
            return nil
        case .sequence(let items):
            var out: [(value: String, mark: Mark)] = []
            for (i, item) in items.enumerated() {
                if case .scalar(let s, _) = item.content, !item.isNull {
                    out.append((s, item.mark))
                } else {
                    error(at: item.mark, path: "\(keyPath(key))[\(i)]", "expected a string, got \(item.kindDescription)")
                }
            }
            return out
        }
    }

    /// A mapping of strings to strings, in file order (e.g. environment variables).
    public func stringMap(_ key: String) -> [(key: String, value: String)]? {
        guard let n = node(key) else { return nil }
        guard case .mapping(let list) = n.content else {
            error(key, "expected a mapping of names to strings, got \(n.kindDescription)")
            return nil
        }
        var out: [(key: String, value: String)] = []
        for entry in list {
            if case .scalar(let s, _) = entry.value.content {
                out.append((entry.key, entry.value.isNull ? "" : s))
            } else {
                error(at: entry.value.mark, path: "\(keyPath(key)).\(entry.key)",
                      "expected a string, got \(entry.value.kindDescription)")
            }
        }
        return out
    }
}

/// An integer as the configuration writes it: `_` separators allowed, `0x` for hexadecimal.
public func parseInt(_ s: String) -> Int? {
    var t = Substring(s)
    t.removeAll { $0 == "_" }
    if t.hasPrefix("0x") || t.hasPrefix("0X") { return Int(t.dropFirst(2), radix: 16) }
    return Int(t)
}

/// A number for a message: integers without a fraction.
public func format(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
    return String(v)
}
