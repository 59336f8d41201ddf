import BitNet
import ConfigTree
import DaemonConfig
import Glibc
import Mosquitto
import Platform
import SensorPlugins
import Services

/// The process around `DaemonCore`: signals, configuration, start-up checks, the engine, the
/// MQTT client, stats, systemd notifications. `bitnetd run` calls `run(configPath:)`.
///
/// The engine is loaded first; then the services (`Services/`) start in dependency order (MQTT,
/// inference thread, plugins, stats, outbox, heap trim, watchdog) and stop in reverse:
/// SIGTERM/SIGINT → finish (or, after `queue.drain_timeout_s`, error) every queued job → refuse
/// late arrivals → flush the outbox if connected → final stats, retained `offline` → DISCONNECT.
/// Subscriptions are kept so a persistent session collects requests while the daemon is down.
/// SIGHUP re-reads the configuration; a bad one is reported and the running one kept. What SIGKILL
/// can lose: libmosquitto acknowledges a QoS 1 request around its callback, so the queued jobs, the
/// outbox and answers not acknowledged yet are lost (docs/daemon.md "What survives").
public enum DaemonRunner {
    static let logger = Logger(label: "bitnetd")


    /// Exit codes: 0 clean stop, 1 bad configuration or failed start-up check, 2 unreadable
    /// configuration, 3 model or broker set-up failure.
    public static func run(configPath: String) -> Int32 {
        // Before any thread exists (engine pool, MQTT, inference), so that every thread inherits
        // the mask and the signals are taken only by the service group's sigtimedwait.
        ServiceGroup.blockSignals()
        signal(SIGPIPE, SIG_IGN)

        let config: BitnetdConfig
        switch loadConfig(configPath) {
        case .success(let c): config = c
        case .failure(let e): return e.code
        }
        Logger.level = Logger.Level(name: config.log.level) ?? .info
        logger.info("configuration \(config.files.joined(separator: ", ")): \(config.routes.count) routes, \(config.plugins.count) plugins")

        let plugins: [any SensorPlugin]
        switch PluginSetup.build(config) {
        case .success(let p): plugins = p
        case .failure(let e):
            for err in e.errors { logger.error("\(err)") }
            return 1
        }

        if let code = checkModels(config) { return code }

        // The kernel cases of the path about to be used (`bitnetd selftest` without the model
        // check): a failing path is skipped for the next one, or refused when forced.
        let kernel: KernelPath
        var skipped: [String] = []
        do {
            let forced = try config.model.kernel.flatMap { KernelPath(rawValue: $0) } ?? KernelPath.fromEnvironment()
            let checked = try KernelSet.checkedPath(forced: forced)
            kernel = checked.path
            if !checked.failed.isEmpty {
                logger.error("kernel self-test failed for \(checked.failed.joined(separator: "; ")); using \(kernel.rawValue) instead (run `bitnetd selftest` and report it)")
            }
            skipped = checked.failed.map { String($0.prefix { $0 != " " }) }
        } catch {
            logger.critical("\(error)")
            return 3
        }

        let engine: Engine
        var routeEngines: [String: Engine] = [:]
        do {
            engine = try loadEngine(config.model.path, config.model, kernel: kernel)
            for path in config.routeModels where path != config.model.path {
                let own = try StartupChecks.routeModelContext(path: path, requested: config.model.context)
                routeEngines[path] = try loadEngine(path, config.model, contextLength: own, kernel: kernel)
            }
            // A route may name the main model too (and may switch to it on SIGHUP).
            routeEngines[config.model.path] = engine
        } catch {
            logger.critical("\(error)")
            return 3
        }
        // Extract routes: the vocabulary's constrained-decoding tables are built now, not at the
        // first request.
        for r in config.routes where r.task == .extract {
            let e = r.model.flatMap { routeEngines[$0] } ?? engine
            let t0 = monotonicMilliseconds()
            e.prepareConstrainedDecoding()
            let ms = monotonicMilliseconds() - t0
            if ms > 1 { logger.info("constrained decoding for \(e.modelName): vocabulary arranged in \(Int(ms)) ms") }
        }
        let budget = MemoryBudget(config: config, plugins: plugins)
        // The prefix-cache share of the budget is split between the engines (docs/daemon.md).
        let engines = 1 + config.routeModels.filter { $0 != config.model.path }.count
        engine.prefixCacheBudget = budget.prefixCache / engines
        logger.info("memory budget \(config.limits.memoryBudgetMB) MiB besides the model: queue \(budget.jobQueue >> 10) KiB, outbox \(budget.outbox >> 10) KiB + \(budget.inFlight >> 10) KiB unacknowledged, plugins \(budget.plugins >> 10) KiB, reading windows \(budget.windows >> 10) KiB, prefix cache \(budget.prefixCache >> 10) KiB")
        logger.info("model \(engine.modelName) (\(StartupChecks.mib(engine.modelFileBytes))), kernel \(engine.kernelName), context \(engine.contextLength) tokens")
        for path in config.routeModels where path != config.model.path {
            let e = routeEngines[path]!
            e.prefixCacheBudget = budget.prefixCache / engines
            let users = config.routes.filter { $0.model == path }.map(\.name).joined(separator: ", ")
            logger.info("route model \(e.modelName) (\(path), \(StartupChecks.mib(e.modelFileBytes))), context \(e.contextLength) tokens, for route\(users.contains(",") ? "s" : "") \(users)")
        }

        // Nothing is built in a circle: the client first (no handlers yet), the message path on
        // top of it, then the client's handlers aimed at the intake.
        let notifier = SystemdNotifier()
        let client: MQTTClient
        do {
            client = try makeClient(config.mqtt)
        } catch {
            logger.critical("\(error)")
            return 3
        }
        let core = DaemonCore(config: config, backend: engine, routeBackends: routeEngines, transport: client,
                              kernel: (engine.kernelName, skipped))
        if let hold = getenv("BITNETD_TEST_HOLD_JOBS") { core.inference.holdWhileExists = String(cString: hold) }
        connect(client, to: core, config.mqtt)
        let mqtt = MQTTService(client: client, core: core, logger: Logger(label: "mqtt"))
        // Dependency order: answers need the broker connection, so MQTT starts first and stops last;
        // plugins feed readings to both, so they start after them and stop before them.
        let pluginService = PluginService(core: core, plugins: plugins)
        let group = ServiceGroup(services: [
            mqtt,
            InferenceService(core: core, drainTimeoutS: { core.config.queue.drainTimeoutS }),
            pluginService,
            StatsService(core: core),
            OutboxService(publisher: core.publisher),
            HeapTrimService(core: core),
            WatchdogService(notifier: notifier),
        ], logger: logger)
        var current = config
        group.onReload = {
            notifier.notify("RELOADING=1")
            if let updated = reload(configPath, current: current, core: core, mqtt: mqtt, plugins: pluginService) { current = updated }
            notifier.notify("READY=1")
        }
        group.onStopping = { notifier.notify("STOPPING=1") }

        logger.info("broker \(config.mqtt.tls.enabled ? "mqtts" : "mqtt")://\(config.mqtt.host):\(config.mqtt.port) as \(config.mqtt.clientID), MQTT \(config.mqtt.protocolVersion.rawValue), status on \(config.mqtt.statusTopic)")
        for r in config.routes {
            let from = r.input == .plugin ? "plugin readings on \(r.topic)" : r.subscription
            logger.info("route \(r.name): \(from) → \(r.task.rawValue) → \(r.outputTopic.source)")
        }
        // READY once the services run; the broker connection itself may come later (backoff).
        group.onStarted = { notifier.notify("READY=1\nSTATUS=running") }
        do {
            try group.run()
        } catch {
            logger.critical("\(error)")
            return 3
        }
        logger.info("stopped")
        return 0
    }

    static func loadConfig(_ path: String) -> Result<BitnetdConfig, Int32Error> {
        do {
            return .success(try ConfigLoader.load(path: path))
        } catch let e as ConfigErrors {
            for err in e.errors { logger.error("\(err)") }
            return .failure(Int32Error(1))
        } catch {
            logger.error("\(error)")
            return .failure(Int32Error(2))
        }
    }

    /// One engine with the configuration's options (`contextLength` overrides `model.context`).
    static func loadEngine(_ path: String, _ model: ModelConfig, contextLength: Int? = nil, kernel: KernelPath) throws(ModelLoadFailure) -> Engine {
        do {
            var options = EngineOptions(threads: model.threads, contextLength: contextLength ?? model.context)
            options.kernel = kernel
            options.preTokenizer = model.preTokenizer.flatMap { PreTokenizer(rawValue: $0) }
            options.lmHead = LMHead(rawValue: model.lmHead) ?? .file
            options.graph = ModelGraph(rawValue: model.graph)
            options.i2sBlock = model.i2sBlock
            return try Engine(modelPath: path, options: options)
        } catch {
            throw ModelLoadFailure(path: path, error: error)
        }
    }

    /// Memory and checksum checks before the models are loaded (every model counts in the memory
    /// check; `model.sha256` is the main model's); the exit code when one fails (3: a model cannot
    /// be used, 1: the check refuses it).
    static func checkModels(_ config: BitnetdConfig) -> Int32? {
        let model = config.model
        do {
            let (m, count) = try StartupChecks.estimateMemory(config: config)
            switch StartupChecks.verdict(m, policy: model.memoryCheck, models: count) {
            case .ok(let figures): logger.info("memory: \(figures)")
            case .warn(let figures): logger.warning("memory is short: \(figures)")
            case .refuse(let figures):
                logger.critical("not enough memory: \(figures); lower model.context or set model.memory_check: warn")
                return 1
            }
        } catch {
            logger.critical("\(error)")
            return 3
        }
        if let expected = model.sha256 {
            do {
                let actual = try SHA256.hexDigest(ofFile: model.path)
                guard actual == expected else {
                    logger.critical("model \(model.path): SHA-256 is \(actual), model.sha256 expects \(expected)")
                    return 1
                }
                logger.info("model SHA-256 verified")
            } catch {
                logger.critical("model \(model.path): \(error)")
                return 1
            }
        }
        return nil
    }

    /// Client options from the configuration; reads the password file or variable.
    public static func clientOptions(_ m: MQTTConfig) throws -> MQTTClientOptions {
        var password: String?
        if let f = m.passwordFile {
            let text = String(decoding: try readFile(f, maxBytes: 64 << 10), as: UTF8.self)
            password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        } else if let name = m.passwordEnv {
            guard let v = getenv(name) else { throw StartupError("mqtt.password_env: environment variable \(name) is not set") }
            password = String(cString: v)
        }
        let tls = m.tls.enabled ? MQTTTLSOptions(caFile: m.tls.caFile, certFile: m.tls.certFile, keyFile: m.tls.keyFile, verify: m.tls.verify) : nil
        return MQTTClientOptions(
            host: m.host, port: m.port, version: m.protocolVersion == .v5 ? .v5 : .v311, clientID: m.clientID,
            keepalive: m.keepalive, cleanStart: m.cleanStart, sessionExpiry: UInt32(m.sessionExpiry),
            username: m.username, password: password, tls: tls,
            will: MQTTWill(topic: m.statusTopic, payload: Array("offline".utf8), qos: 1, retain: true),
            reconnectMinS: m.reconnectMinS, reconnectMaxS: m.reconnectMaxS)
    }

    static func makeClient(_ m: MQTTConfig) throws -> MQTTClient {
        try MQTTClient(options: clientOptions(m), logger: Logger(label: "mqtt"))
    }

    /// Aims the client's handlers at the message path: messages to the intake, (re)connects to
    /// the publisher (retained `online`, discovery).
    static func connect(_ client: MQTTClient, to core: DaemonCore, _ m: MQTTConfig) {
        let mqttLogger = Logger(label: "mqtt")
        let (intake, publisher) = (core.intake, core.publisher)
        client.setHandlers(
            onMessage: { message in intake.handle(message) },
            onConnection: { up, detail in
                if up {
                    mqttLogger.info("connected to \(m.host):\(m.port)")
                    publisher.connected()
                } else {
                    mqttLogger.warning("not connected: \(detail)")
                }
            })
    }

    /// SIGHUP: the new configuration or nil (reported, old one kept).
    static func reload(_ path: String, current: BitnetdConfig, core: DaemonCore, mqtt: MQTTService,
                       plugins pluginService: PluginService) -> BitnetdConfig? {
        let updated: BitnetdConfig
        do {
            updated = try ConfigLoader.load(path: path)
        } catch let e as ConfigErrors {
            logger.error("SIGHUP: the new configuration has \(e.errors.count) error(s); keeping the running one")
            for err in e.errors { logger.error("\(err)") }
            return nil
        } catch {
            logger.error("SIGHUP: \(error); keeping the running configuration")
            return nil
        }
        let plugins: [any SensorPlugin]
        switch PluginSetup.build(updated) {
        case .success(let p): plugins = p
        case .failure(let e):
            logger.error("SIGHUP: the new configuration has \(e.errors.count) plugin error(s); keeping the running one")
            for err in e.errors { logger.error("\(err)") }
            return nil
        }
        let loaded = core.inference.loadedRouteModels
        if let r = updated.routes.first(where: { $0.model.map { !loaded.contains($0) } ?? false }), let mark = r.modelMark {
            logger.error("SIGHUP: \(mark): routes.\(r.name).model: '\(r.model!)' is not loaded; model files are loaded at start-up only, so restart bitnetd to use it; keeping the running configuration")
            return nil
        }
        if updated.model != current.model {
            logger.warning("SIGHUP: model settings changed; they take effect at the next restart")
        }
        Logger.level = Logger.Level(name: updated.log.level) ?? .info
        // Plugins restart with the new list (a new host), after the routes they feed are in place.
        core.apply(updated)
        pluginService.replace(with: plugins)
        if updated.mqtt != current.mqtt {
            do {
                let fresh = try makeClient(updated.mqtt)
                connect(fresh, to: core, updated.mqtt)
                logger.info("SIGHUP: MQTT settings changed; reconnecting to \(updated.mqtt.host):\(updated.mqtt.port)")
                try mqtt.replace(with: fresh)
            } catch {
                logger.error("SIGHUP: cannot apply the MQTT settings: \(error); keeping the current connection")
            }
        }
        logger.info("SIGHUP: configuration reloaded: \(updated.routes.count) routes, \(plugins.count) plugins")
        return updated
    }
}

public struct Int32Error: Error {
    public var code: Int32
    init(_ code: Int32) { self.code = code }
}

struct StartupError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
