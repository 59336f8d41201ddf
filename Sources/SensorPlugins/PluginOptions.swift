/// A typed view of one plugin's section of the configuration.
///
/// Each accessor returns the value (or its default) and records a problem instead of throwing, so a
/// config check reports every error at once, in the daemon's format
/// (`FILE:LINE:COL: plugins[2].interval_s: expected 0.1...86400, got 0`). The reader remembers
/// which keys were asked for; `unknownKeyErrors()` then reports every other key of the section as
/// unknown, with a did-you-mean, so a plugin declares its keys simply by reading them.
///
/// Not thread-safe: it lives only while one plugin is being configured.
public final class PluginOptions {
    /// The key path of the section, e.g. `plugins[2]`.
    public let path: String
    /// The mark of the section (its first key).
    public let mark: SourceMark
    public private(set) var errors: [PluginConfigError] = []
    private var entries: [String: PluginNode.Entry] = [:]
    private var order: [PluginNode.Entry] = []
    private var consumed: Set<String> = []

    public init(_ node: PluginNode, path: String) {
        self.path = path
        self.mark = node.mark
        if case .mapping(let list) = node.content {
            for entry in list {
                entries[entry.key] = entry
                order.append(entry)
            }
        } else if !node.isNull {
            errors.append(PluginConfigError(node.mark, path, "expected a mapping, got \(node.kindDescription)"))
        }
    }

    /// Records a problem at `key`'s value (or at the section when the key is absent).
    public func error(_ key: String?, _ message: String) {
        guard let key else {
            errors.append(PluginConfigError(mark, path, message))
            return
        }
        errors.append(PluginConfigError(markOf(key), keyPath(key), message))
    }

    /// Records a problem at an explicit position, e.g. one item of a list.
    public func error(at mark: SourceMark, path: String, _ message: String) {
        errors.append(PluginConfigError(mark, path, message))
    }

    public func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The mark of a key's value, or of the section when the key is absent.
    public func markOf(_ key: String) -> SourceMark { entries[key]?.value.mark ?? mark }

    /// The raw node of a key (null counts as absent). Marks the key as known.
    public func node(_ key: String) -> PluginNode? {
        consumed.insert(key)
        guard let n = entries[key]?.value, !n.isNull else { return nil }
        return n
    }

    public func has(_ key: String) -> Bool { node(key) != nil }

    private func scalar(_ key: String, expected: String) -> (String, SourceMark)? {
        guard let n = node(key) else { return nil }
        guard case .scalar(let s, _) = n.content else {
            error(key, "expected \(expected), got \(n.kindDescription)")
            return nil
        }
        return (s, n.mark)
    }

    public func string(_ key: String) -> String? {
        scalar(key, expected: "a string")?.0
    }

    public func string(_ key: String, default value: String) -> String {
        string(key) ?? value
    }

    /// A string that must be present (reports "required key is missing").
    public func requiredString(_ key: String) -> String? {
        if let s = string(key) { return s }
        if entries[key].map({ $0.value.isNull }) ?? true { error(at: mark, path: keyPath(key), "required key is missing") }
        return nil
    }

    public func int(_ key: String, default value: Int, range: ClosedRange<Int>) -> Int {
        guard let (s, _) = scalar(key, expected: "an integer") else { return value }
        var t = Substring(s)
        t.removeAll { $0 == "_" }
        guard let v = Int(t) else {
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
            error(key, "expected \(JSON.format(range.lowerBound))...\(JSON.format(range.upperBound)), got \(JSON.format(v))")
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
            if let hint = closestWord(to: s, among: allowed) { message += "; did you mean '\(hint)'?" }
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
    public func stringItems(_ key: String) -> [(value: String, mark: SourceMark)]? {
        guard let n = node(key) else { return nil }
        switch n.content {
        case .scalar(let s, _):
            return [(s, n.mark)]
        case .mapping:
            error(key, "expected a list of strings, got a mapping")
            return nil
        case .sequence(let items):
            var out: [(value: String, mark: SourceMark)] = []
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

    /// Problems for every key of the section that no accessor asked for.
    public func unknownKeyErrors() -> [PluginConfigError] {
        let known = consumed.sorted()
        return order.filter { !consumed.contains($0.key) }.map { entry in
            var message = "unknown key '\(entry.key)'"
            if let s = closestWord(to: entry.key, among: known) { message += "; did you mean '\(s)'?" }
            return PluginConfigError(entry.keyMark, keyPath(entry.key), message)
        }
    }
}

/// The closest of `words` to a likely typo, or nil (Levenshtein distance, as the config module does).
public func closestWord(to word: String, among words: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
    let w = Array(word.lowercased())
    guard let (best, d) = words.map({ ($0, distance(w, Array($0))) }).min(by: { $0.1 < $1.1 }) else { return nil }
    if d <= Swift.max(2, best.count / 3) { return best }
    if best.hasPrefix(word) || word.hasPrefix(best) { return best }
    return nil
}
