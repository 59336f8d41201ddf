import CYAML
import Glibc

/// A position in a configuration file, 1-based like editors and compilers print it.
public struct Mark: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: Mark, b: Mark) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// One node of a YAML document as libyaml reported it, with the mark of its first character.
///
/// Scalars keep their text and whether they were written plain (unquoted): only a plain scalar can
/// be `null`, a number or a boolean in the typed reader. Environment references (`${VAR}`,
/// `${VAR:-default}`) are already substituted when the tree is built.
public struct YAMLNode: Sendable {
    public enum Content: Sendable {
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        case mapping([YAMLEntry])
    }

    public var content: Content
    public var mark: Mark

    public init(_ content: Content, mark: Mark) {
        self.content = content
        self.mark = mark
    }

    /// A plain empty scalar, `~` or `null`.
    public var isNull: Bool {
        if case .scalar(let s, true) = content {
            return s.isEmpty || s == "~" || s == "null" || s == "Null" || s == "NULL"
        }
        return false
    }

    /// What the node is, for "expected X, got Y" messages.
    public var kindDescription: String {
        switch content {
        case .scalar(let s, _): return isNull ? "null" : "'\(s)'"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }

    public subscript(key: String) -> YAMLNode? {
        guard case .mapping(let entries) = content else { return nil }
        return entries.last(where: { $0.key == key })?.value
    }
}

/// A key of a YAML mapping (keys are scalars in our schema) with its own mark, and its value.
public struct YAMLEntry: Sendable {
    public var key: String
    public var keyMark: Mark
    public var value: YAMLNode

    public init(key: String, keyMark: Mark, value: YAMLNode) {
        self.key = key
        self.keyMark = keyMark
        self.value = value
    }
}

/// Builds a `YAMLNode` tree from libyaml's event stream.
///
/// Problems that make the tree unusable (syntax errors) are thrown; problems that only affect one
/// key (duplicate keys, unset environment variables, non-scalar keys) are collected in `errors`
/// and the tree is still returned, so a config check reports everything at once.
public enum YAMLParser {
    public typealias Environment = @Sendable (String) -> String?

    public static let processEnvironment: Environment = { name in
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    /// Parses one YAML document. An empty document yields a null scalar at 1:1.
    public static func parse(
        _ text: String, file: String, environment: @escaping Environment = processEnvironment
    ) throws(ConfigErrors) -> (root: YAMLNode, errors: [ConfigError]) {
        var builder = TreeBuilder(file: file, environment: environment)
        var utf8 = Array(text.utf8)
        if utf8.isEmpty { utf8 = [0x0A] }
        let result: Result<YAMLNode, ConfigErrors> = utf8.withUnsafeMutableBufferPointer { buffer in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else {
                return .failure(ConfigErrors([ConfigError(Mark(file: file, line: 1, column: 1), "", "YAML parser could not be initialised")]))
            }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let m = parser.problem_mark
                    let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
                    var message = "YAML syntax error: \(problem)"
                    if let context = parser.context {
                        message += " (\(String(cString: context)))"
                    }
                    return .failure(ConfigErrors([ConfigError(
                        Mark(file: file, line: Int(m.line) + 1, column: Int(m.column) + 1), "", message)]))
                }
                defer { yaml_event_delete(&event) }
                if event.type == YAML_STREAM_END_EVENT { break }
                builder.handle(&event)
            }
            return .success(builder.root ?? YAMLNode(.scalar("", plain: true), mark: Mark(file: file, line: 1, column: 1)))
        }
        switch result {
        case .success(let root): return (root, builder.errors)
        case .failure(let e): throw e
        }
    }
}

private struct TreeBuilder {
    enum Frame {
        case sequence([YAMLNode], Mark, anchor: String?)
        case mapping([YAMLEntry], Mark, pendingKey: (String, Mark)?, seen: [String: Mark], anchor: String?)
    }

    let file: String
    let environment: YAMLParser.Environment
    var stack: [Frame] = []
    var root: YAMLNode?
    var anchors: [String: YAMLNode] = [:]
    var errors: [ConfigError] = []
    var documents = 0

    init(file: String, environment: @escaping YAMLParser.Environment) {
        self.file = file
        self.environment = environment
    }

    func mark(_ m: yaml_mark_t) -> Mark {
        Mark(file: file, line: Int(m.line) + 1, column: Int(m.column) + 1)
    }

    mutating func handle(_ event: inout yaml_event_t) {
        let m = mark(event.start_mark)
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            documents += 1
            if documents == 2 {
                errors.append(ConfigError(m, "", "only one YAML document per file is supported"))
            }
        case YAML_SCALAR_EVENT:
            let s = event.data.scalar
            let raw = String(decoding: UnsafeBufferPointer(start: s.value, count: Int(s.length)), as: UTF8.self)
            let plain = s.style == YAML_PLAIN_SCALAR_STYLE
            let value = substitute(raw, mark: m, path: currentPath())
            let node = YAMLNode(.scalar(value, plain: plain), mark: m)
            if let a = s.anchor { anchors[String(cString: a)] = node }
            add(node)
        case YAML_ALIAS_EVENT:
            let name = String(cString: event.data.alias.anchor)
            if var node = anchors[name] {
                node.mark = m
                add(node)
            } else {
                errors.append(ConfigError(m, "", "unknown alias '*\(name)'"))
                add(YAMLNode(.scalar("", plain: true), mark: m))
            }
        case YAML_SEQUENCE_START_EVENT:
            let anchor = event.data.sequence_start.anchor.map { String(cString: $0) }
            stack.append(.sequence([], m, anchor: anchor))
        case YAML_MAPPING_START_EVENT:
            let anchor = event.data.mapping_start.anchor.map { String(cString: $0) }
            stack.append(.mapping([], m, pendingKey: nil, seen: [:], anchor: anchor))
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let frame = stack.popLast() else { return }
            switch frame {
            case .sequence(let items, let start, let anchor):
                let node = YAMLNode(.sequence(items), mark: start)
                if let anchor { anchors[anchor] = node }
                add(node)
            case .mapping(let entries, let start, _, _, let anchor):
                let node = YAMLNode(.mapping(entries), mark: start)
                if let anchor { anchors[anchor] = node }
                add(node)
            }
        default:
            break
        }
    }

    mutating func add(_ node: YAMLNode) {
        guard let top = stack.popLast() else {
            if root == nil { root = node }
            return
        }
        switch top {
        case .sequence(var items, let m, let anchor):
            items.append(node)
            stack.append(.sequence(items, m, anchor: anchor))
        case .mapping(var entries, let m, let pending, var seen, let anchor):
            if let (key, keyMark) = pending {
                if let first = seen[key] {
                    errors.append(ConfigError(keyMark, joinPath(currentPath(), key), "duplicate key '\(key)' (first defined at \(first.line):\(first.column))"))
                    // Keep the first definition so the reported value matches what a reader sees first.
                } else {
                    seen[key] = keyMark
                    entries.append(YAMLEntry(key: key, keyMark: keyMark, value: node))
                }
                stack.append(.mapping(entries, m, pendingKey: nil, seen: seen, anchor: anchor))
            } else {
                let key: String
                if case .scalar(let s, _) = node.content {
                    key = s
                } else {
                    errors.append(ConfigError(node.mark, "", "mapping keys must be plain strings, got \(node.kindDescription)"))
                    key = "\u{0}invalid-key-\(node.mark.line)-\(node.mark.column)"
                }
                stack.append(.mapping(entries, m, pendingKey: (key, node.mark), seen: seen, anchor: anchor))
            }
        }
    }

    /// The key path of the node about to be added (a mapping value or a list item).
    func currentPath() -> String {
        var path = ""
        for frame in stack {
            switch frame {
            case .sequence(let items, _, _):
                path += "[\(items.count)]"
            case .mapping(_, _, let pending, _, _):
                if let (key, _) = pending { path = joinPath(path, key) }
            }
        }
        return path
    }

    /// `${NAME}` → the variable (an error if unset), `${NAME:-default}` → the variable if set and
    /// non-empty else `default`, `$${` → a literal `${`.
    mutating func substitute(_ text: String, mark: Mark, path: String) -> String {
        guard text.contains("$") else { return text }
        var out = ""
        var chars = Substring(text)
        while let dollar = chars.firstIndex(of: "$") {
            out += chars[..<dollar]
            let after = chars[chars.index(after: dollar)...]
            if after.hasPrefix("${") {
                out += "${"
                chars = after.dropFirst(2)
                continue
            }
            guard after.hasPrefix("{"), let close = after.firstIndex(of: "}") else {
                out += "$"
                chars = after
                continue
            }
            let inner = after[after.index(after: after.startIndex)..<close]
            chars = after[after.index(after: close)...]
            var name = Substring(inner)
            var fallback: Substring?
            if let range = inner.findRange(":-") {
                name = inner[..<range.lowerBound]
                fallback = inner[range.upperBound...]
            }
            let valid = !name.isEmpty && name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
            guard valid else {
                errors.append(ConfigError(mark, path, "invalid environment reference '${\(inner)}'"))
                continue
            }
            if let value = environment(String(name)), !(fallback != nil && value.isEmpty) {
                out += value
            } else if let fallback {
                out += fallback
            } else {
                errors.append(ConfigError(mark, path, "environment variable '\(name)' is not set (use ${\(name):-default} for a default)"))
            }
        }
        out += chars
        return out
    }
}

func joinPath(_ path: String, _ key: String) -> String {
    path.isEmpty ? key : path + "." + key
}
