import ConfigTree
import Platform

/// The options every plugin entry has, read by the registry before the plugin sees its section.
///
/// ```yaml
/// plugins:
///   - id: linux-thermal        # which built-in (registry id, kebab-case)
///     name: soc                # instance name, unique; default: the id
///     topic: kitchen/pi/soc    # base topic of its readings; default: <mqtt.topic_prefix>/sensors/<name>
///     interval_s: 5            # sampled plugins only; the plugin's own default otherwise
///     publish: true            # also publish readings to MQTT (routes see them either way)
/// ```
public struct PluginSettings: Sendable, Equatable {
    /// Registry id, e.g. `linux-thermal`.
    public var id: String
    /// Instance name, unique among the configured plugins; used in logs, errors and the default topic.
    public var name: String
    /// Base topic of the readings; nil means `<mqtt.topic_prefix>/sensors/<name>`.
    public var topic: String?
    /// Seconds between samples for sampled plugins; nil for plugins that push readings (`exec`).
    public var interval: Double?
    /// Whether the daemon publishes the readings to MQTT (routes with plugin input see them anyway).
    public var publish: Bool
    /// Key path of the entry, e.g. `plugins[2]`, and where it starts, for run-time messages.
    public var path: String
    public var mark: Mark

    public init(id: String, name: String, topic: String? = nil, interval: Double? = nil, publish: Bool = true,
                path: String = "", mark: Mark = Mark(file: "", line: 0, column: 0)) {
        self.id = id
        self.name = name
        self.topic = topic
        self.interval = interval
        self.publish = publish
        self.path = path
        self.mark = mark
    }

    /// The base topic: the configured one, or `<prefix>/sensors/<name>`.
    public func baseTopic(prefix: String) -> String {
        topic ?? "\(prefix)/sensors/\(name)"
    }

    /// The MQTT topic of a reading: the base topic, then `/` and the reading's suffix if it has one.
    public func topic(for reading: Reading, prefix: String) -> String {
        let base = baseTopic(prefix: prefix)
        return reading.topicSuffix.isEmpty ? base : "\(base)/\(reading.topicSuffix)"
    }
}

/// A run-time problem of a plugin: a file it could not read, a value that is not a number, a
/// malformed line, a child process that crashed. The daemon publishes these on its error topic
/// (`error` = `code`, `detail` = `message`) and logs them; the plugin keeps running.
public struct PluginError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A short machine-readable word: `read_failed`, `bad_value`, `bad_line`, `spawn_failed`,
    /// `exited`, `no_data`.
    public var code: String
    /// A sentence for an operator, naming the file, field or line.
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// What one sample produced: readings, and problems with the parts that could not be read.
/// A plugin with four thermal zones and one broken zone returns three readings and one problem.
public struct PluginSample: Sendable, Equatable {
    public var readings: [Reading]
    public var errors: [PluginError]

    public init(readings: [Reading] = [], errors: [PluginError] = []) {
        self.readings = readings
        self.errors = errors
    }
}

/// A configured plugin instance. Built by a `PluginFactory` from its config section; run by a
/// `PluginHost`. Conform to `SampledSensorPlugin` or `PushingSensorPlugin`.
public protocol SensorPlugin: AnyObject, Sendable {
    var settings: PluginSettings { get }
    /// The most memory the plugin's buffers can hold at once (its share of the daemon's memory
    /// budget, `limits.memory_budget_mb`).
    var maxBufferedBytes: Int { get }
}

extension SensorPlugin {
    /// A sampled plugin holds one sample at a time.
    public var maxBufferedBytes: Int { 64 << 10 }
}

/// A plugin the host samples every `settings.interval` seconds (built-ins).
public protocol SampledSensorPlugin: SensorPlugin {
    /// Reads the sensor once. Called on the plugin's own serial queue, never concurrently with
    /// itself, first right after start and then every interval; `time` is the wall clock (seconds
    /// since the epoch) to stamp readings with. May block briefly (a sysfs read), not for long:
    /// a slow sample delays only this plugin.
    func sample(at time: Double) -> PluginSample
}

/// A plugin that produces readings on its own (the `exec` plugin and its child process).
public protocol PushingSensorPlugin: SensorPlugin {
    /// Starts producing readings into `sink`; returns at once.
    func start(_ sink: PluginSink)
    /// Stops, and returns when the plugin has stopped or its grace period (plus a little) is over.
    /// After it returns the plugin calls `sink` no more.
    func stop()
}

/// Where a pushing plugin delivers what it produces. The host wraps these (adds the plugin's
/// settings, suppresses repeated errors, drops everything after `stop()`).
public struct PluginSink: Sendable {
    public var reading: @Sendable (Reading) -> Void
    public var error: @Sendable (PluginError) -> Void
    public var log: @Sendable (Logger.Level, String) -> Void

    public init(reading: @escaping @Sendable (Reading) -> Void, error: @escaping @Sendable (PluginError) -> Void,
                log: @escaping @Sendable (Logger.Level, String) -> Void) {
        self.reading = reading
        self.error = error
        self.log = log
    }
}
