/// A position in a configuration file, 1-based, printed `FILE:LINE:COL` like the rest of the config.
///
/// `SensorPlugins` may import only Glibc (DESIGN.md §3), so it cannot see `DaemonConfig.Mark`; the
/// daemon copies the three numbers over when it hands a plugin section to the registry.
public struct SourceMark: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: SourceMark, b: SourceMark) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// One `plugins:` entry of the configuration as a small YAML-like tree with marks.
///
/// Why a tree of our own: the config module keeps each plugin entry as an opaque
/// `DaemonConfig.YAMLNode`, and this module must not import `DaemonConfig` (it depends on libyaml;
/// plugins only on Glibc). The daemon converts one into the other with a ten-line recursive
/// function (shown in `PluginRegistry`'s documentation), and every plugin decodes its options from
/// this tree through `PluginOptions`, so errors keep the file, line and column of the YAML.
public struct PluginNode: Sendable {
    public enum Content: Sendable {
        /// Text of a scalar; `plain` is false when it was quoted (only a plain scalar can be null,
        /// a number or a boolean).
        case scalar(String, plain: Bool)
        case sequence([PluginNode])
        case mapping([Entry])
    }

    /// A key of a mapping with its own mark, and its value.
    public struct Entry: Sendable {
        public var key: String
        public var keyMark: SourceMark
        public var value: PluginNode

        public init(key: String, keyMark: SourceMark, value: PluginNode) {
            self.key = key
            self.keyMark = keyMark
            self.value = value
        }
    }

    public var content: Content
    public var mark: SourceMark

    public init(_ content: Content, mark: SourceMark) {
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

    /// The value of the last entry with this key, when the node is a mapping.
    public subscript(key: String) -> PluginNode? {
        guard case .mapping(let entries) = content else { return nil }
        return entries.last(where: { $0.key == key })?.value
    }
}

/// One problem in a plugin's configuration, printed `FILE:LINE:COL: plugins[2].interval_s: message`
/// exactly like `DaemonConfig.ConfigError`, which the daemon can build from the same three parts.
public struct PluginConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var mark: SourceMark
    /// Dotted key path with list indices, e.g. `plugins[2].command[0]`.
    public var path: String
    public var message: String

    public init(_ mark: SourceMark, _ path: String, _ message: String) {
        self.mark = mark
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? "\(mark): \(message)" : "\(mark): \(path): \(message)"
    }
}

/// Every problem found in the plugin sections, sorted by position.
public struct PluginConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [PluginConfigError]

    public init(_ errors: [PluginConfigError]) {
        self.errors = errors.sorted { $0.mark < $1.mark }
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
