import Dispatch
import JSONValue
import Platform
import Synchronization

/// Runs configured plugins — the plugin scheduler service of DESIGN.md §3.
///
/// Each plugin gets its own serial Dispatch queue: a sampled plugin is sampled there by a
/// Dispatch timer (first at once, then every `interval`); a pushing plugin (`exec`) is started
/// there and supervises its child process itself. Nothing runs on the caller's thread and nothing
/// a plugin does (a slow sysfs read, a silent child) can block another plugin or the daemon.
///
/// Callbacks are called on the plugins' queues: never concurrently for one plugin, possibly
/// concurrently for different plugins; `log` also during `stop()`. They should return quickly (hand the reading to the router)
/// and must not call `stop()`. Every problem is passed on; the daemon rate-limits what it
/// publishes per (plugin, error code) (`Publisher`).
///
/// A host is used once: `start`, then `stop`. On SIGHUP the daemon stops the old host and starts
/// a new one with the new plugin list.
public final class PluginHost: Sendable {
    public typealias ReadingHandler = @Sendable (PluginSettings, Reading) -> Void
    public typealias ErrorHandler = @Sendable (PluginSettings, PluginError) -> Void

    private enum Phase { case idle, running([Runner]), stopped }

    private let logger: Logger
    private let phase = Mutex<Phase>(.idle)

    /// - Parameters:
    ///   - logger: receives start/stop messages and what plugins log (an exec plugin's stderr
    ///     lines), prefixed with `plugin <name>: `.
    public init(logger: Logger = Logger(label: "plugins", handler: { _, _ in })) {
        self.logger = logger
    }

    /// Starts every plugin and returns at once. Readings go to `onReading`, problems to `onError`.
    public func start(plugins: [any SensorPlugin], onReading: @escaping ReadingHandler,
                      onError: @escaping ErrorHandler) {
        let runners = plugins.map {
            Runner(plugin: $0, onReading: onReading, onError: onError, logger: logger)
        }
        phase.withLock { phase in
            guard case .idle = phase else { preconditionFailure("PluginHost.start called twice") }
            phase = .running(runners)
        }
        for runner in runners { runner.start() }
    }

    /// Stops every plugin: sampling ends, exec children get SIGTERM and, after their grace period,
    /// SIGKILL. Returns when all have stopped (at most the longest grace period plus a little);
    /// after it returns no callback is called. Calling it again does nothing.
    public func stop() {
        let runners: [Runner] = phase.withLock { phase in
            defer { phase = .stopped }
            if case .running(let r) = phase { return r }
            return []
        }
        let group = DispatchGroup()
        for runner in runners {
            DispatchQueue.global().async(group: group) { runner.stop() }
        }
        group.wait()
        if !runners.isEmpty { logger.info("plugins stopped (\(runners.count))") }
    }
}

/// One plugin under the host: its queue, its timer, and the gate that drops callbacks after stop.
private final class Runner: @unchecked Sendable {
    // @unchecked: `timer` and `plugin` are set once in init; Dispatch sources are thread-safe; the
    // mutable state is in `gate`.
    struct Gate {
        var stopped = false
    }

    let plugin: any SensorPlugin
    let settings: PluginSettings
    let queue: DispatchQueue
    let onReading: PluginHost.ReadingHandler
    let onError: PluginHost.ErrorHandler
    let logger: Logger
    let gate = Mutex(Gate())
    let timer: DispatchSourceTimer?

    init(plugin: any SensorPlugin, onReading: @escaping PluginHost.ReadingHandler,
         onError: @escaping PluginHost.ErrorHandler, logger: Logger) {
        self.plugin = plugin
        self.settings = plugin.settings
        self.queue = DispatchQueue(label: "bitnetd.plugin.\(plugin.settings.name)")
        self.onReading = onReading
        self.onError = onError
        self.logger = logger
        timer = plugin is any SampledSensorPlugin ? DispatchSource.makeTimerSource(queue: queue) : nil
    }

    func start() {
        let name = settings.name
        if let sampled = plugin as? any SampledSensorPlugin, let timer {
            let interval = settings.interval ?? 10
            let ns = Int((interval * 1e9).rounded())
            let leeway = min(ns / 10, 1_000_000_000)
            timer.schedule(deadline: .now(), repeating: .nanoseconds(ns), leeway: .nanoseconds(leeway))
            timer.setEventHandler { [self] in
                let sample = sampled.sample(at: wallClock())
                for r in sample.readings { deliver(r) }
                for e in sample.errors { report(e) }
            }
            timer.resume()
            logger.info("plugin \(name) (\(settings.id)): sampling every \(JSON.format(interval)) s")
        } else if let pushing = plugin as? any PushingSensorPlugin {
            let sink = PluginSink(
                reading: { [self] r in deliver(r) },
                error: { [self] e in report(e) },
                log: { [self] level, message in logger.log(level, "plugin \(name): \(message)") })
            queue.async { pushing.start(sink) }
            logger.info("plugin \(name) (\(settings.id)): started")
        }
    }

    func stop() {
        gate.withLock { $0.stopped = true }
        timer?.cancel()
        if let pushing = plugin as? any PushingSensorPlugin {
            pushing.stop()
        }
    }

    func deliver(_ reading: Reading) {
        gate.withLock { g in
            guard !g.stopped else { return }
            onReading(settings, reading)
        }
    }

    func report(_ error: PluginError) {
        gate.withLock { g in
            guard !g.stopped else { return }
            onError(settings, error)
        }
    }
}
