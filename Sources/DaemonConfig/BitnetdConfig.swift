import ConfigTree
import JSONSchema

/// The daemon's configuration (`etc/bitnetd.yaml` is the commented reference of every key).
public struct BitnetdConfig: Sendable, Equatable {
    public var model: ModelConfig
    public var mqtt: MQTTConfig
    public var queue: QueueConfig
    public var limits: LimitsConfig
    public var stats: StatsConfig
    public var log: LogConfig
    public var routes: [RouteConfig]
    /// Home Assistant MQTT discovery of decide routes.
    public var homeAssistant: HomeAssistantConfig
    /// Plugin entries, kept as nodes for the plugin host; only `id` is checked here.
    public var plugins: [PluginConfig]
    /// Files read, in merge order (main file first, then conf.d).
    public var files: [String]
    /// Where file-path values were written (`model.path`, `mqtt.password_file`,
    /// `mqtt.tls.ca_file`, …), so `check-config` can point at them.
    public var fileMarks: [String: Mark]

    /// The file paths the configuration refers to, with their key path and mark, in file order.
    public var referencedFiles: [(key: String, path: String, mark: Mark)] {
        var out: [(String, String, Mark)] = []
        func add(_ key: String, _ path: String?) {
            if let path, let mark = fileMarks[key] { out.append((key, path, mark)) }
        }
        add("mqtt.password_file", mqtt.passwordFile)
        add("mqtt.tls.ca_file", mqtt.tls.caFile)
        add("mqtt.tls.cert_file", mqtt.tls.certFile)
        add("mqtt.tls.key_file", mqtt.tls.keyFile)
        for r in routes { add("routes.\(r.name).model", r.model) }
        return out.sorted { $0.2 < $1.2 }
    }

    /// The distinct `routes[].model` files, in route order (`model.path` not included unless a
    /// route names it too).
    public var routeModels: [String] {
        var seen = Set<String>()
        return routes.compactMap { r in r.model.flatMap { seen.insert($0).inserted ? $0 : nil } }
    }
}

public struct ModelConfig: Sendable, Equatable {
    public var path: String
    /// Engine worker threads; 0 = all online CPUs.
    public var threads: Int
    /// KV-cache length in tokens; 0 = min(trained context, 4096).
    public var context: Int
    /// nil = automatic (or `BITNETD_KERNEL`).
    public var kernel: String?
    /// Lower-case hex SHA-256 of the model file, verified at start-up when set.
    public var sha256: String?
    public var preTokenizer: String?
    /// LM head: `file` (the file's own, exact) or `q8_0` (an int8 copy built at load: faster
    /// generation, slightly different logits).
    public var lmHead: String = "file"
    /// `auto` (from the file, docs: model-families) or a forced forward pass.
    public var graph: String = "auto"
    /// I2_S block layout of the file: 128 (published) or 64 (ARM conversions, repacked at load).
    public var i2sBlock = 128
    /// Start-up memory check: refuse when model + KV cache exceed available memory (else warn).
    public var memoryCheck: String
    /// Where `path` was written, for check-config messages about the file itself.
    public var pathMark: Mark

    public static func == (a: ModelConfig, b: ModelConfig) -> Bool {
        a.path == b.path && a.threads == b.threads && a.context == b.context && a.kernel == b.kernel
            && a.sha256 == b.sha256 && a.preTokenizer == b.preTokenizer && a.memoryCheck == b.memoryCheck
            && a.lmHead == b.lmHead
    }
}

public enum MQTTProtocol: String, Sendable, Equatable {
    case v5 = "5"
    case v311 = "3.1.1"
}

public struct TLSConfig: Sendable, Equatable {
    public var enabled: Bool
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    /// Verify the broker's certificate and host name.
    public var verify: Bool
}

public struct MQTTConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var protocolVersion: MQTTProtocol
    public var clientID: String
    public var keepalive: Int
    public var cleanStart: Bool
    /// MQTT 5 session expiry interval in seconds (how long the broker keeps our session and queues
    /// QoS 1 messages while we are away).
    public var sessionExpiry: Int
    public var username: String?
    public var passwordFile: String?
    public var passwordEnv: String?
    public var tls: TLSConfig
    public var topicPrefix: String
    public var reconnectMinS: Int
    public var reconnectMaxS: Int
    /// Answers produced while the broker cannot take them (disconnected, or too many publishes
    /// not acknowledged yet) wait here, oldest dropped first when full or too old.
    public var outboxMaxMessages: Int = 1000
    public var outboxMaxAgeS: Double = 600

    public var statusTopic: String { topicPrefix + "/status" }
    public var statsTopic: String { topicPrefix + "/stats" }
    public var errorTopic: String { topicPrefix + "/error" }
}

public enum OverflowPolicy: String, Sendable, Equatable {
    case dropOldest = "drop_oldest"
    case reject = "reject"
}

public struct QueueConfig: Sendable, Equatable {
    public var size: Int
    public var overflow: OverflowPolicy
    /// On SIGTERM, queued jobs are still computed for this long; the rest are answered with an error.
    public var drainTimeoutS: Double
    /// Queued decide jobs of one route decided together in one pass over the weights (1 = never).
    public var batchMax: Int = 8
}

public struct LimitsConfig: Sendable, Equatable {
    public var maxPayloadBytes: Int
    /// Memory for everything beyond the model mapping, its copies and the KV cache (MiB); the
    /// configured buffers must fit in it (docs/daemon.md "Memory budget").
    public var memoryBudgetMB: Int = 64
    /// Where `memory_budget_mb` was written (or the `limits` section / file), for its error.
    public var memoryBudgetMark = Mark(file: "", line: 0, column: 0)

    /// The values (not where they were written).
    public static func == (a: LimitsConfig, b: LimitsConfig) -> Bool {
        a.maxPayloadBytes == b.maxPayloadBytes && a.memoryBudgetMB == b.memoryBudgetMB
    }
}

public struct StatsConfig: Sendable, Equatable {
    /// 0 = no stats messages.
    public var intervalS: Int
}

public struct LogConfig: Sendable, Equatable {
    public var level: String
}

public enum RouteTask: String, Sendable, Equatable {
    case decide
    case generate
    /// Schema-constrained generation: the output is a JSON value valid for `schema`.
    case extract
}

public enum RouteInput: String, Sendable, Equatable {
    case json
    case text
    /// Sensor-plugin readings (not MQTT): the route's topic filter is matched against reading
    /// topics and the payload is the reading's fields as a JSON object.
    case plugin
}

/// The last readings a plugin route decides on (`window:`): the last `count`, those of the last
/// `spanS` seconds, or both.
public struct WindowConfig: Sendable, Equatable {
    public var count: Int?
    public var spanS: Double?
}

/// When a plugin route publishes its decision (`debounce:`).
public struct DebounceConfig: Sendable, Equatable {
    public var onChange: Bool
    public var minIntervalS: Double?
}

/// `homeassistant:` — MQTT discovery of decide routes as Home Assistant sensors.
public struct HomeAssistantConfig: Sendable, Equatable {
    public var enabled: Bool
    /// Discovery prefix (Home Assistant's default is `homeassistant`).
    public var prefix: String
    /// The `<node_id>` level of discovery topics and the device identifier.
    public var nodeID: String
    /// Device name shown in Home Assistant.
    public var deviceName: String
}

public struct RouteConfig: Sendable, Equatable {
    public var name: String
    public var topic: String
    public var sharedGroup: String?
    public var qos: Int
    public var input: RouteInput
    public var prompt: Template
    public var task: RouteTask
    public var labels: [String]
    public var minConfidence: Double
    public var maxTokens: Int
    public var temperature: Double
    public var stop: [String]
    public var outputTopic: Template
    public var outputQoS: Int
    public var retain: Bool
    public var errorTopic: String
    /// MQTT 5 response topics this route answers on (filters); nil = any topic outside the
    /// daemon's own, Home Assistant's and the routes' output topics (docs/daemon.md "Topic safety").
    public var responseTopics: [String]? = nil
    public var window: WindowConfig?
    public var debounce: DebounceConfig?
    /// `model:`: this route's own model file (resolved against the directory of the file it is
    /// written in); nil = `model.path`. Loaded once per distinct file at start-up.
    public var model: String? = nil
    public var modelMark: Mark? = nil
    /// `task: extract`: the compiled JSON Schema of the output.
    public var schema: JSONSchema? = nil
    /// generate/extract: wrap the rendered prompt in the model's chat format (from its
    /// `tokenizer.chat_template`).
    public var chat = false
    public var mark: Mark

    /// What is sent in SUBSCRIBE: the filter, or `$share/<group>/<filter>`.
    public var subscription: String {
        if let g = sharedGroup { return "$share/\(g)/\(topic)" }
        return topic
    }
}

public struct PluginConfig: Sendable {
    public var id: String
    public var node: ConfigNode
}

extension PluginConfig: Equatable {
    public static func == (a: PluginConfig, b: PluginConfig) -> Bool {
        a.id == b.id && a.node.mark == b.node.mark
    }
}

/// Checks an MQTT subscription filter: `+` and `#` only as whole levels, `#` last, no NUL.
public func topicFilterProblem(_ filter: String) -> String? {
    if filter.isEmpty { return "a topic filter cannot be empty" }
    if filter.hasPrefix("$share/") { return "write the group in shared_group, not in the topic" }
    let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
    for (i, level) in levels.enumerated() {
        if level.contains("#") && (level != "#" || i != levels.count - 1) {
            return "'#' must be a whole level and the last one"
        }
        if level.contains("+") && level != "+" { return "'+' must be a whole level" }
    }
    if filter.utf8.contains(0) { return "a topic filter cannot contain NUL" }
    return nil
}

/// Checks a topic to publish to (docs/daemon.md "Topic safety"): not empty, no wildcards, no NUL,
/// at most 65,535 bytes, and a first level that is neither empty nor a `$` topic (`$SYS/…`,
/// `$share/…` belong to the broker).
public func topicNameProblem(_ topic: String) -> String? {
    if topic.isEmpty { return "a topic cannot be empty" }
    let u = topic.utf8
    if u.contains(UInt8(ascii: "+")) || u.contains(UInt8(ascii: "#")) { return "a topic to publish to cannot contain '+' or '#'" }
    if u.contains(0) { return "a topic cannot contain NUL" }
    if u.count > 65_535 { return "a topic is at most 65535 bytes, got \(u.count)" }
    if u.first == UInt8(ascii: "/") { return "a topic's first level cannot be empty (it starts with '/')" }
    if u.first == UInt8(ascii: "$") { return "a topic's first level cannot start with '$' (reserved for the broker)" }
    return nil
}

/// Route names become one topic level (`<prefix>/decision/<name>`, Home Assistant ids), so they
/// are limited to `^[A-Za-z0-9_-]{1,64}$`.
public func routeNameProblem(_ name: String) -> String? {
    let ok = !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy {
        ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
    }
    return ok ? nil : "a route name is 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-' (it becomes a topic level), got '\(name)'"
}
