/// Collects the problems found while reading a node tree into typed values.
final class ConfigContext {
    var errors: [ConfigError] = []

    func error(_ mark: Mark, _ path: String, _ message: String) {
        errors.append(ConfigError(mark, path, message))
    }
}

/// A typed view of one YAML mapping: each accessor returns the value or its default and records a
/// problem instead of throwing, so every error of a file is reported in one pass. Keys not in
/// `known` are reported as unknown, with a did-you-mean.
struct MapReader {
    let context: ConfigContext
    let path: String
    let mark: Mark
    private(set) var entries: [String: YAMLEntry] = [:]
    /// False when the node was present but not a mapping (already reported).
    let isValid: Bool

    init(_ node: YAMLNode?, path: String, parentMark: Mark, known: [String], context: ConfigContext) {
        self.context = context
        self.path = path
        self.mark = node?.mark ?? parentMark
        guard let node, !node.isNull else {
            isValid = true
            return
        }
        guard case .mapping(let list) = node.content else {
            context.error(node.mark, path, "expected a mapping, got \(node.kindDescription)")
            isValid = false
            return
        }
        isValid = true
        for entry in list {
            if known.contains(entry.key) {
                entries[entry.key] = entry
            } else {
                var message = "unknown key '\(entry.key)'"
                if let s = suggestion(for: entry.key, among: known) { message += "; did you mean '\(s)'?" }
                context.error(entry.keyMark, joinPath(path, entry.key), message)
            }
        }
    }

    func has(_ key: String) -> Bool {
        guard let n = entries[key]?.value else { return false }
        return !n.isNull
    }

    func node(_ key: String) -> YAMLNode? {
        guard let n = entries[key]?.value, !n.isNull else { return nil }
        return n
    }

    func keyPath(_ key: String) -> String { joinPath(path, key) }

    func missing(_ key: String) {
        guard isValid else { return }
        context.error(mark, keyPath(key), "required key is missing")
    }

    /// The text of a scalar, or nil (absent or null); reports non-scalars.
    private func scalar(_ key: String, expected: String) -> (String, plain: Bool, Mark)? {
        guard let n = node(key) else { return nil }
        guard case .scalar(let s, let plain) = n.content else {
            context.error(n.mark, keyPath(key), "expected \(expected), got \(n.kindDescription)")
            return nil
        }
        return (s, plain, n.mark)
    }

    func string(_ key: String, required: Bool = false) -> String? {
        guard let (s, _, _) = scalar(key, expected: "a string") else {
            if required && !isWrongType(key) { missing(key) }
            return nil
        }
        return s
    }

    func string(_ key: String, default value: String) -> String {
        string(key) ?? value
    }

    private func isWrongType(_ key: String) -> Bool { node(key) != nil }

    func int(_ key: String, default value: Int, range: ClosedRange<Int>) -> Int {
        guard let (s, _, m) = scalar(key, expected: "an integer") else { return value }
        guard let v = parseInt(s) else {
            context.error(m, keyPath(key), "expected an integer, got '\(s)'")
            return value
        }
        guard range.contains(v) else {
            context.error(m, keyPath(key), "expected \(range.lowerBound)...\(range.upperBound), got \(v)")
            return value
        }
        return v
    }

    func double(_ key: String, default value: Double, range: ClosedRange<Double>) -> Double {
        guard let (s, _, m) = scalar(key, expected: "a number") else { return value }
        guard let v = Double(s), v.isFinite else {
            context.error(m, keyPath(key), "expected a number, got '\(s)'")
            return value
        }
        guard range.contains(v) else {
            context.error(m, keyPath(key), "expected \(format(range.lowerBound))...\(format(range.upperBound)), got \(format(v))")
            return value
        }
        return v
    }

    func bool(_ key: String, default value: Bool) -> Bool {
        guard let (s, _, m) = scalar(key, expected: "true or false") else { return value }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            context.error(m, keyPath(key), "expected true or false, got '\(s)'")
            return value
        }
    }

    func choice(_ key: String, _ allowed: [String], default value: String) -> String {
        guard let (s, _, m) = scalar(key, expected: "one of \(allowed.joined(separator: ", "))") else { return value }
        guard allowed.contains(s) else {
            var message = "expected one of \(allowed.joined(separator: ", ")); got '\(s)'"
            if let hint = suggestion(for: s, among: allowed) { message += "; did you mean '\(hint)'?" }
            context.error(m, keyPath(key), message)
            return value
        }
        return s
    }

    /// A list of strings; a single scalar is accepted as a one-element list.
    func stringList(_ key: String) -> [String]? {
        guard let n = node(key) else { return nil }
        switch n.content {
        case .scalar(let s, _):
            return [s]
        case .mapping:
            context.error(n.mark, keyPath(key), "expected a list of strings, got a mapping")
            return nil
        case .sequence(let items):
            var out: [String] = []
            for (i, item) in items.enumerated() {
                if case .scalar(let s, _) = item.content, !item.isNull {
                    out.append(s)
                } else {
                    context.error(item.mark, "\(keyPath(key))[\(i)]", "expected a string, got \(item.kindDescription)")
                }
            }
            return out
        }
    }

    /// The mark of a key's value (or of this mapping when absent), for cross-field errors.
    func markOf(_ key: String) -> Mark { entries[key]?.value.mark ?? mark }
    func keyMarkOf(_ key: String) -> Mark { entries[key]?.keyMark ?? mark }

    func map(_ key: String, known: [String]) -> MapReader {
        MapReader(entries[key]?.value, path: keyPath(key), parentMark: keyMarkOf(key), known: known, context: context)
    }
}

func parseInt(_ s: String) -> Int? {
    var t = Substring(s)
    t.removeAll { $0 == "_" }
    if t.hasPrefix("0x") || t.hasPrefix("0X") { return Int(t.dropFirst(2), radix: 16) }
    return Int(t)
}

func format(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
    return String(v)
}
