/// One node of a configuration document, with the mark of its first character.
///
/// The one tree every part of the configuration is read from: the daemon's schema
/// (`DaemonConfig`) and each plugin's options (`SensorPlugins`) decode the same nodes, so every
/// error keeps its `FILE:LINE:COL`. Built from YAML by `DaemonConfig.YAMLParser`; nothing here
/// knows about YAML.
///
/// Scalars keep their text and whether they were written plain (unquoted): only a plain scalar can
/// be `null`, a number or a boolean in the typed reader.
public struct ConfigNode: Sendable {
    public enum Content: Sendable {
        case scalar(String, plain: Bool)
        case sequence([ConfigNode])
        case mapping([ConfigEntry])
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

    /// The value of the last entry with this key, when the node is a mapping.
    public subscript(key: String) -> ConfigNode? {
        guard case .mapping(let entries) = content else { return nil }
        return entries.last(where: { $0.key == key })?.value
    }
}

/// A key of a mapping (keys are scalars in our schema) with its own mark, and its value.
public struct ConfigEntry: Sendable {
    public var key: String
    public var keyMark: Mark
    public var value: ConfigNode

    public init(key: String, keyMark: Mark, value: ConfigNode) {
        self.key = key
        self.keyMark = keyMark
        self.value = value
    }
}
