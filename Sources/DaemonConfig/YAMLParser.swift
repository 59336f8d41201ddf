import ConfigTree
import CYAML
import Glibc

/// Builds a `ConfigNode` tree from libyaml's event stream.
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
    ) throws(ConfigErrors) -> (root: ConfigNode, errors: [ConfigError]) {
        var builder = TreeBuilder(file: file, environment: environment)
        var utf8 = Array(text.utf8)
        if utf8.isEmpty { utf8 = [0x0A] }
        let result: Result<ConfigNode, ConfigErrors> = utf8.withUnsafeMutableBufferPointer { buffer in
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
                if let fatal = builder.fatal { return .failure(ConfigErrors([fatal])) }
            }
            return .success(builder.root ?? ConfigNode(.scalar("", plain: true), mark: Mark(file: file, line: 1, column: 1)))
        }
        switch result {
        case .success(let root): return (root, builder.errors)
        case .failure(let e): throw e
        }
    }
}

/// Builds the tree in time linear in the document: each open collection is a frame whose arrays
/// are appended to in place (no copy per item), the key path of a frame is computed once when it
/// opens, nesting stops at `maxDepth`, and aliases may not expand the tree past `maxNodes`.
private struct TreeBuilder {
    /// Collections nested deeper than this are refused (a deeper config is an attack, not a config).
    static let maxDepth = 64
    /// Nodes the tree may hold once aliases are expanded ("billion laughs" guard).
    static let maxNodes = 1_000_000

    struct Frame {
        var isMapping: Bool
        var start: Mark
        var anchor: String?
        /// Key path of this collection (for error messages of its children).
        var path: String
        /// Nodes counted when this collection opened (its expanded size on close).
        var nodesAtStart: Int
        var items: [ConfigNode] = []
        var entries: [ConfigEntry] = []
        var pendingKey: (String, Mark)?
        var seen: [String: Mark] = [:]
    }

    let file: String
    let environment: YAMLParser.Environment
    var stack: [Frame] = []
    var root: ConfigNode?
    var anchors: [String: (node: ConfigNode, size: Int)] = [:]
    var errors: [ConfigError] = []
    /// An error that stops the build (too deep, too many nodes).
    var fatal: ConfigError?
    var documents = 0
    /// Nodes in the tree so far, aliases counted at their expanded size.
    var nodes = 0

    init(file: String, environment: @escaping YAMLParser.Environment) {
        self.file = file
        self.environment = environment
    }

    func mark(_ m: yaml_mark_t) -> Mark {
        Mark(file: file, line: Int(m.line) + 1, column: Int(m.column) + 1)
    }

    mutating func count(_ n: Int, at m: Mark) {
        nodes += n
        if nodes > Self.maxNodes && fatal == nil {
            fatal = ConfigError(m, "", "the document expands to more than \(Self.maxNodes) nodes (aliases)")
        }
    }

    mutating func open(_ isMapping: Bool, _ m: Mark, anchor: String?) {
        if stack.count >= Self.maxDepth {
            if fatal == nil { fatal = ConfigError(m, "", "nesting deeper than \(Self.maxDepth) levels") }
            return
        }
        let path = currentPath()
        count(1, at: m)
        stack.append(Frame(isMapping: isMapping, start: m, anchor: anchor, path: path, nodesAtStart: nodes))
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
            let value = raw.utf8.contains(UInt8(ascii: "$")) ? substitute(raw, mark: m, path: currentPath()) : raw
            let node = ConfigNode(.scalar(value, plain: plain), mark: m)
            if let a = s.anchor { anchors[String(cString: a)] = (node, 1) }
            count(1, at: m)
            add(node)
        case YAML_ALIAS_EVENT:
            let name = String(cString: event.data.alias.anchor)
            if var (node, size) = anchors[name] {
                node.mark = m
                count(size, at: m)
                add(node)
            } else {
                errors.append(ConfigError(m, "", "unknown alias '*\(name)'"))
                count(1, at: m)
                add(ConfigNode(.scalar("", plain: true), mark: m))
            }
        case YAML_SEQUENCE_START_EVENT:
            open(false, m, anchor: event.data.sequence_start.anchor.map { String(cString: $0) })
        case YAML_MAPPING_START_EVENT:
            open(true, m, anchor: event.data.mapping_start.anchor.map { String(cString: $0) })
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let frame = stack.popLast() else { return }
            let node = ConfigNode(frame.isMapping ? .mapping(frame.entries) : .sequence(frame.items), mark: frame.start)
            if let anchor = frame.anchor { anchors[anchor] = (node, nodes - frame.nodesAtStart + 1) }
            add(node)
        default:
            break
        }
    }

    mutating func add(_ node: ConfigNode) {
        guard !stack.isEmpty else {
            if root == nil { root = node }
            return
        }
        let top = stack.count - 1
        if !stack[top].isMapping {
            stack[top].items.append(node)
            return
        }
        if let (key, keyMark) = stack[top].pendingKey {
            stack[top].pendingKey = nil
            if let first = stack[top].seen[key] {
                errors.append(ConfigError(keyMark, joinPath(stack[top].path, key), "duplicate key '\(key)' (first defined at \(first.line):\(first.column))"))
                // Keep the first definition so the reported value matches what a reader sees first.
            } else {
                stack[top].seen[key] = keyMark
                stack[top].entries.append(ConfigEntry(key: key, keyMark: keyMark, value: node))
            }
        } else {
            let key: String
            if case .scalar(let s, _) = node.content {
                key = s
            } else {
                errors.append(ConfigError(node.mark, "", "mapping keys must be plain strings, got \(node.kindDescription)"))
                key = "\u{0}invalid-key-\(node.mark.line)-\(node.mark.column)"
            }
            stack[top].pendingKey = (key, node.mark)
        }
    }

    /// The key path of the node about to be added (a mapping value or a list item).
    func currentPath() -> String {
        guard let top = stack.last else { return "" }
        if !top.isMapping { return top.path + "[\(top.items.count)]" }
        if let (key, _) = top.pendingKey { return joinPath(top.path, key) }
        return top.path
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
            guard after.hasPrefix("{") else {
                out += "$"
                chars = after
                continue
            }
            guard let close = after.firstIndex(of: "}") else {
                errors.append(ConfigError(mark, path, "unterminated environment reference '$\(after.prefix(40))' (write ${NAME}, or $${ for a literal '${')"))
                chars = ""
                continue
            }
            let inner = after[after.index(after: after.startIndex)..<close]
            chars = after[after.index(after: close)...]
            var name = Substring(inner)
            var fallback: Substring?
            if let range = inner.firstRange(of: ":-") {
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
