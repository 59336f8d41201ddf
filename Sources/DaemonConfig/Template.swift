/// A parsed `{{…}}` template (DESIGN.md §8 "Templates").
///
/// - `{{a.b}}` reads field `b` of object `a` of the JSON payload (a missing field is a bad-input
///   error when rendering, never an empty string);
/// - `{{topic.N}}` reads the N-th level (0-based) of the message's topic;
/// - `{{payload}}` is the whole payload text (the input of `input: text` routes);
/// - `{{route}}` is the route's name;
/// - `{{window.count}}`, `{{window.last[.F]}}`, `{{window.mean.F}}`, `{{window.min.F}}`,
///   `{{window.max.F}}`, `{{window.list.F}}` read the reading window of an `input: plugin` route
///   with `window:` (checked when the route is decoded; resolved by the daemon).
/// Templates are parsed when the configuration is read, so syntax problems are config errors with
/// a file position rather than per-message failures.
public struct Template: Sendable, Equatable, CustomStringConvertible {
    public enum Part: Sendable, Equatable {
        case text(String)
        case field([String])
        case topicLevel(Int)
        case payload
        case route
        /// `{{window.…}}` of a route with a reading window: the path after `window.`, e.g.
        /// `mean.temp_c` (resolved by the daemon through `ReadingWindow.resolve`).
        case window(String)
        /// `{{value.F}}` in the output topic of an extract route: top-level property F of the
        /// generated object (resolved after generation; never produced by `parse`, which reads
        /// `value.F` as a payload field — the route decoder converts it).
        case value(String)
    }

    public let parts: [Part]
    public let source: String

    public var description: String { source }

    public init(parts: [Part], source: String) {
        self.parts = parts
        self.source = source
    }

    /// Parses `source`; the error string is a complete sentence for a config message.
    public static func parse(_ source: String) -> Result<Template, TemplateError> {
        var parts: [Part] = []
        var rest = Substring(source)
        var literal = ""
        while let open = rest.firstRange(of: "{{") {
            literal += rest[..<open.lowerBound]
            let after = rest[open.upperBound...]
            guard let close = after.firstRange(of: "}}") else {
                return .failure(TemplateError(message: "unclosed '{{' in template"))
            }
            let name = after[..<close.lowerBound].trimmingSpaces()
            rest = after[close.upperBound...]
            let part: Part
            if name.utf8.contains(UInt8(ascii: "{")) || name.utf8.contains(UInt8(ascii: "}")) {
                return .failure(TemplateError(message: "'{{\(name)}}': a placeholder name cannot contain '{' or '}' (unclosed '{{' before it?)"))
            } else if name.isEmpty {
                return .failure(TemplateError(message: "empty '{{}}' in template"))
            } else if name == "payload" {
                part = .payload
            } else if name == "route" {
                part = .route
            } else if name.hasPrefix("topic.") {
                guard let n = Int(name.dropFirst(6)), n >= 0 else {
                    return .failure(TemplateError(message: "'{{\(name)}}': topic levels are written {{topic.N}} with N = 0, 1, …"))
                }
                part = .topicLevel(n)
            } else if name == "window" || name.hasPrefix("window.") {
                let rest = name.hasPrefix("window.") ? String(name.dropFirst(7)) : ""
                let op = rest.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
                let ops = ["count", "last", "mean", "min", "max", "list"]
                guard let first = op.first, ops.contains(String(first)) else {
                    return .failure(TemplateError(message: "'{{\(name)}}': expected window.count, window.last[.F], window.mean.F, window.min.F, window.max.F or window.list.F"))
                }
                let field = op.count > 1 ? String(op[1]) : nil
                if first == "count" && field != nil {
                    return .failure(TemplateError(message: "'{{\(name)}}': window.count takes no field"))
                }
                if ["mean", "min", "max", "list"].contains(String(first)) && (field ?? "").isEmpty {
                    return .failure(TemplateError(message: "'{{\(name)}}': window.\(first) needs a field, e.g. window.\(first).temp_c"))
                }
                if first == "last" && field == "" {
                    return .failure(TemplateError(message: "'{{\(name)}}': missing field name after 'last.'"))
                }
                part = .window(rest)
            } else {
                let path = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                guard path.allSatisfy({ !$0.isEmpty }) else {
                    return .failure(TemplateError(message: "'{{\(name)}}' is not a valid field path"))
                }
                part = .field(path)
            }
            if !literal.isEmpty {
                parts.append(.text(literal))
                literal = ""
            }
            parts.append(part)
        }
        literal += rest
        if !literal.isEmpty { parts.append(.text(literal)) }
        return .success(Template(parts: parts, source: source))
    }

    /// True if the template reads a reading window (`{{window.…}}`).
    public var readsWindow: Bool {
        parts.contains { if case .window = $0 { return true } else { return false } }
    }

    /// True if the template reads the generated value (`{{value.F}}`, extract output topics).
    public var readsValue: Bool {
        parts.contains { if case .value = $0 { return true } else { return false } }
    }

    /// True if the template reads a level of the message's topic (`{{topic.N}}`).
    public var readsTopic: Bool {
        parts.contains { if case .topicLevel = $0 { return true } else { return false } }
    }

    /// True if the template reads the payload as JSON fields.
    public var readsFields: Bool {
        parts.contains { if case .field = $0 { return true } else { return false } }
    }
}

public struct TemplateError: Error, Sendable, Equatable {
    public var message: String
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
