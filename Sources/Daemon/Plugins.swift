import BuiltinPlugins
import ConfigTree
import DaemonConfig
import Platform
import SensorPlugins
import Synchronization

/// Builds the configured sensor plugins from the built-in registry (DESIGN.md §6).
public enum PluginSetup {
    /// The plugins of `config.plugins`, or every problem as a `ConfigError`
    /// (`FILE:LINE:COL: plugins[i].key: message`), for `run`, SIGHUP and `check-config`.
    public static func build(_ config: BitnetdConfig) -> Result<[any SensorPlugin], ConfigErrors> {
        do throws(ConfigErrors) {
            return .success(try BuiltinPlugins.registry.makePlugins(config.plugins.map(\.node)))
        } catch {
            return .failure(error)
        }
    }
}

/// The plugin host as a service: starts after MQTT (readings are published and decided on), stops
/// before the inference thread and MQTT. `replace` swaps in a new host with a new plugin list
/// (SIGHUP).
final class PluginService: Service {
    let name = "plugins"
    private let core: DaemonCore
    private let logger = Logger(label: "plugins")
    private let state: Mutex<(host: PluginHost?, plugins: [any SensorPlugin], running: Bool)>

    init(core: DaemonCore, plugins: [any SensorPlugin]) {
        self.core = core
        state = Mutex((nil, plugins, false))
    }

    func start() throws {
        let plugins = state.withLock { s -> [any SensorPlugin] in
            s.running = true
            return s.plugins
        }
        let host = launch(plugins)
        state.withLock { $0.host = host }
    }

    /// Stops the running host and starts a new one with `plugins`.
    func replace(with plugins: [any SensorPlugin]) {
        let (old, running) = state.withLock { s -> (PluginHost?, Bool) in
            let old = s.host
            s.host = nil
            s.plugins = plugins
            return (old, s.running)
        }
        old?.stop()
        guard running else { return }
        let host = launch(plugins)
        state.withLock { $0.host = host }
    }

    func stop() {
        let old = state.withLock { s -> PluginHost? in
            s.running = false
            defer { s.host = nil }
            return s.host
        }
        old?.stop()
    }

    private func launch(_ plugins: [any SensorPlugin]) -> PluginHost? {
        guard !plugins.isEmpty else { return nil }
        let host = PluginHost(logger: logger)
        let core = self.core
        host.start(plugins: plugins, onReading: { settings, reading in
            let topic = settings.topic(for: reading, prefix: core.config.mqtt.topicPrefix)
            if settings.publish { core.publish(reading: reading, topic: topic) }
            core.handle(reading: reading, topic: topic)
        }, onError: { settings, error in
            core.publishPluginError(settings, error)
        })
        return host
    }
}
