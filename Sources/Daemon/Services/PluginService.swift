import Platform
import SensorPlugins
import Services
import Synchronization

/// The sensor plugins as a service: starts after MQTT and the inference worker (readings are
/// published and decided on), stops before them. `replace` swaps in a new host with a new plugin
/// list (SIGHUP). A plugin that fails keeps being restarted by its host; it never ends the group.
final class PluginService: Service {
    let name = "plugins"
    private let core: DaemonCore
    private let logger = Logger(label: "plugins")
    private let state: Mutex<(host: PluginHost?, plugins: [any SensorPlugin], running: Bool)>

    init(core: DaemonCore, plugins: [any SensorPlugin]) {
        self.core = core
        state = Mutex((nil, plugins, false))
    }

    func run(_ context: ServiceContext) throws {
        let plugins = state.withLock { s -> [any SensorPlugin] in
            s.running = true
            return s.plugins
        }
        let host = launch(plugins)
        state.withLock { $0.host = host }
        context.ready()
        context.waitForShutdown()
        let old = state.withLock { s -> PluginHost? in
            s.running = false
            defer { s.host = nil }
            return s.host
        }
        old?.stop()
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

    private func launch(_ plugins: [any SensorPlugin]) -> PluginHost? {
        guard !plugins.isEmpty else { return nil }
        let host = PluginHost(logger: logger)
        let (intake, publisher) = (core.intake, core.publisher)
        host.start(plugins: plugins, onReading: { settings, reading in
            let topic = settings.topic(for: reading, prefix: intake.config.mqtt.topicPrefix)
            if settings.publish { publisher.publish(reading: reading, topic: topic) }
            intake.handle(reading: reading, topic: topic)
        }, onError: { settings, error in
            publisher.publishPluginError(settings, error)
        })
        return host
    }
}
