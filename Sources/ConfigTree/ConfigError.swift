/// One problem in a configuration, printed as `FILE:LINE:COL: key.path[index]: message`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var mark: Mark
    /// Dotted key path with list indices, e.g. `routes[1].labels`; empty for file-level problems.
    public var path: String
    public var message: String

    public init(_ mark: Mark, _ path: String, _ message: String) {
        self.mark = mark
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? "\(mark): \(message)" : "\(mark): \(path): \(message)"
    }
}

/// Every problem found in a configuration, sorted by file position.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = errors.sorted { $0.mark < $1.mark }
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// Collects the problems found while reading a tree, so one pass reports every error of a file.
/// Not thread-safe: it lives while one configuration is decoded.
public final class ConfigDiagnostics {
    public private(set) var errors: [ConfigError] = []

    public init(_ errors: [ConfigError] = []) { self.errors = errors }

    public func error(_ mark: Mark, _ path: String, _ message: String) {
        errors.append(ConfigError(mark, path, message))
    }

    public func append(_ more: [ConfigError]) { errors += more }
}

/// `a.b` from a key path and a key.
public func joinPath(_ path: String, _ key: String) -> String {
    path.isEmpty ? key : path + "." + key
}

/// Levenshtein distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// The closest of `words` to `word`, if it is close enough to be a likely typo.
public func suggestion(for word: String, among words: [String]) -> String? {
    let scored = words.map { ($0, editDistance(word.lowercased(), $0)) }.min { $0.1 < $1.1 }
    guard let (best, distance) = scored else { return nil }
    let limit = max(2, best.count / 3)
    if distance <= limit { return best }
    if best.hasPrefix(word) || word.hasPrefix(best) { return best }
    return nil
}
