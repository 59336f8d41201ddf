import ConfigTree
import DaemonConfig
import Foundation
import Platform
import SensorPlugins
import Synchronization

// Plugin test helpers: YAML → plugin nodes through the daemon's own YAML parser, a thread-safe recorder for host callbacks, and polling.

/// The entries of the `plugins:` list of a YAML text, as the daemon would hand them over.
public func pluginNodes(yaml: String, file: String = "bitnetd.yaml") throws -> [ConfigNode] {
    let (root, errors) = try YAMLParser.parse(yaml, file: file, environment: { _ in nil })
    if !errors.isEmpty { throw TestFailure(errors.map(\.description).joined(separator: "\n")) }
    guard let list = root["plugins"], case .sequence(let items) = list.content else {
        throw TestFailure("\(file): no plugins list")
    }
    return items
}

/// Builds the plugins of a YAML text: the plugins, or (when the config has problems) the error lines.
public func makePlugins(_ registry: PluginRegistry, yaml: String, file: String = "bitnetd.yaml")
    throws -> (plugins: [any SensorPlugin], errors: [String]) {
    let nodes = try pluginNodes(yaml: yaml, file: file)
    do throws(ConfigErrors) {
        return (try registry.makePlugins(nodes), [])
    } catch {
        return ([], error.errors.map(\.description))
    }
}

/// Records what a `PluginHost` or a `PluginSink` delivers, from any thread.
public final class Recorder: Sendable {
    public struct Entry: Sendable {
        public var plugin: String
        public var reading: Reading?
        public var error: PluginError?
        public var time: Double
    }

    private let state = Mutex<(entries: [Entry], logs: [(Logger.Level, String)])>(([], []))

    public init() {}

    public var readings: [Reading] { state.withLock { $0.entries.compactMap(\.reading) } }
    public var errors: [PluginError] { state.withLock { $0.entries.compactMap(\.error) } }
    public var entries: [Entry] { state.withLock { $0.entries } }
    public var logs: [String] { state.withLock { $0.logs.map(\.1) } }

    public var onReading: PluginHost.ReadingHandler {
        { s, r in self.state.withLock { $0.entries.append(Entry(plugin: s.name, reading: r, time: monotonicSeconds())) } }
    }

    public var onError: PluginHost.ErrorHandler {
        { s, e in self.state.withLock { $0.entries.append(Entry(plugin: s.name, error: e, time: monotonicSeconds())) } }
    }

    public var log: Logger.Handler {
        { level, m in self.state.withLock { $0.logs.append((level, m)) } }
    }

    /// A logger whose every line is recorded (for `PluginHost(logger:)`).
    public var logger: Logger { Logger(label: "test", handler: log) }

    public func sink(name: String = "test") -> PluginSink {
        let settings = PluginSettings(id: "test", name: name)
        let (r, e) = (onReading, onError)
        return PluginSink(reading: { r(settings, $0) }, error: { e(settings, $0) }, log: log)
    }
}

/// Whether a process exists (signal 0).
public func processExists(_ pid: pid_t) -> Bool {
    kill(pid, 0) == 0 || errno == EPERM
}
