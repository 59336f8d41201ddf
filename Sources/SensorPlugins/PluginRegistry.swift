import ConfigTree

/// How to build one kind of plugin from its config section.
public struct PluginFactory: Sendable {
    /// Registry id, kebab-case, equal to the plugin's folder name under `plugins/`.
    public let id: String
    /// One line for `check-config` and the logs.
    public let summary: String
    /// Seconds between samples when `interval_s` is not set; nil for plugins that push readings
    /// (they take no `interval_s`).
    public let defaultInterval: Double?
    /// Reads the plugin's own keys from `options` (recording problems there) and returns the
    /// plugin, or nil when the options are unusable. The common keys are already in `settings`.
    public let make: @Sendable (PluginSettings, ConfigReader) -> (any SensorPlugin)?

    public init(id: String, summary: String, defaultInterval: Double?,
                make: @escaping @Sendable (PluginSettings, ConfigReader) -> (any SensorPlugin)?) {
        precondition(isKebabCase(id), "plugin id '\(id)' is not kebab-case")
        self.id = id
        self.summary = summary
        self.defaultInterval = defaultInterval
        self.make = make
    }
}

/// The known plugin kinds, and the decoding of `plugins:` entries into configured plugins.
///
/// The explicit list of built-ins is `BuiltinPlugins.registry` (`plugins/all/`, a target that
/// depends on every plugin target; this module cannot). The daemon calls `makePlugins` with the
/// `plugins:` entries of its configuration tree at start-up and on SIGHUP; every problem comes back
/// as a `ConfigError` (`FILE:LINE:COL: plugins[i].key: message`), like the rest of the config.
public struct PluginRegistry: Sendable {
    public let factories: [PluginFactory]

    public init(_ factories: [PluginFactory]) {
        var seen: Set<String> = []
        for f in factories { precondition(seen.insert(f.id).inserted, "plugin id '\(f.id)' registered twice") }
        self.factories = factories
    }

    public var ids: [String] { factories.map(\.id) }

    public subscript(id: String) -> PluginFactory? { factories.first { $0.id == id } }

    /// Builds every entry of a `plugins:` list; all problems of all entries are thrown together.
    /// `path` is the key of the list (entries are `plugins[0]`, `plugins[1]`, …).
    public func makePlugins(_ nodes: [ConfigNode], path: String = "plugins") throws(ConfigErrors) -> [any SensorPlugin] {
        var plugins: [any SensorPlugin] = []
        var errors: [ConfigError] = []
        var names: [String: Mark] = [:]
        for (i, node) in nodes.enumerated() {
            switch makePlugin(node, path: "\(path)[\(i)]") {
            case .success(let plugin):
                let s = plugin.settings
                let at = node["name"]?.mark ?? node["id"]?.mark ?? node.mark
                if let first = names[s.name] {
                    let place = first.file == at.file ? "\(first.line):\(first.column)" : first.description
                    errors.append(ConfigError(at, "\(path)[\(i)].name",
                        "duplicate plugin name '\(s.name)' (first at \(place)); give each instance its own name:"))
                } else {
                    names[s.name] = at
                }
                plugins.append(plugin)
            case .failure(let e):
                errors += e.errors
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
        return plugins
    }

    /// Builds one entry (`path` is e.g. `plugins[2]`).
    public func makePlugin(_ node: ConfigNode, path: String) -> Result<any SensorPlugin, ConfigErrors> {
        let options = ConfigReader(node, path: path)
        guard options.errors.isEmpty else { return .failure(ConfigErrors(options.errors)) }
        guard let id = options.requiredString("id") else { return .failure(ConfigErrors(options.errors)) }
        guard let factory = self[id] else {
            var message = "unknown plugin '\(id)'"
            if let hint = suggestion(for: id, among: ids) { message += "; did you mean '\(hint)'?" }
            message += " (built-in: \(ids.sorted().joined(separator: ", ")))"
            return .failure(ConfigErrors([ConfigError(options.markOf("id"), options.keyPath("id"), message)]))
        }
        let name = options.string("name", default: id)
        if !isValidInstanceName(name) {
            options.error("name", "expected letters, digits, '-' and '_' (it becomes a topic level), got '\(name)'")
        }
        let topic = options.string("topic")
        if let topic, let problem = baseTopicProblem(topic) { options.error("topic", problem) }
        var interval: Double?
        if let d = factory.defaultInterval {
            interval = options.double("interval_s", default: d, range: 0.1...86_400)
        } else if options.node("interval_s") != nil {
            options.error("interval_s", "'\(id)' plugins push their readings and take no interval_s (the program decides when to print)")
        }
        let publish = options.bool("publish", default: true)
        let settings = PluginSettings(id: id, name: name, topic: topic, interval: interval, publish: publish,
                                      path: path, mark: node.mark)
        let plugin = factory.make(settings, options)
        options.reportUnknownKeys()
        let errors = options.errors
        if !errors.isEmpty { return .failure(ConfigErrors(errors)) }
        guard let plugin else {
            return .failure(ConfigErrors([ConfigError(node.mark, path, "plugin '\(id)' could not be configured")]))
        }
        return .success(plugin)
    }
}

/// `linux-thermal`, `file-tail`, `exec`: lower-case letters and digits in words joined by single dashes.
public func isKebabCase(_ s: String) -> Bool {
    guard !s.isEmpty, !s.hasPrefix("-"), !s.hasSuffix("-"), !s.contains("--") else { return false }
    return s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }
        && !(s.utf8.first! >= 0x30 && s.utf8.first! <= 0x39)
}

func isValidInstanceName(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy {
        ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39)
            || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
    }
}

func baseTopicProblem(_ topic: String) -> String? {
    if topic.isEmpty { return "a topic cannot be empty" }
    if topic.hasPrefix("$") { return "a topic cannot start with '$' (reserved by brokers), got '\(topic)'" }
    if topic.contains("+") || topic.contains("#") { return "a publish topic cannot contain '+' or '#', got '\(topic)'" }
    if topic.utf8.contains(0) { return "a topic cannot contain NUL" }
    if topic.hasSuffix("/") { return "a topic cannot end with '/', got '\(topic)'" }
    return nil
}
