import Glibc
import Mosquitto
import Platform
import Synchronization

/// A long-running part of the daemon (the swift-service-lifecycle pattern, which itself needs
/// Swift 6.2): started in dependency order, stopped gracefully in reverse order.
public protocol Service: AnyObject, Sendable {
    var name: String { get }
    func start() throws
    /// Graceful stop; returns when the service has finished its work.
    func stop()
}

/// Runs services on the calling (main) thread's signal loop.
///
/// `blockSignals()` must run before any thread is created so that SIGTERM, SIGINT and SIGHUP are
/// only ever taken here, by `sigtimedwait`: SIGTERM/SIGINT stop the group (services in reverse
/// order), SIGHUP calls `onReload`. `onTick` runs about every 250 ms (stats, watchdog).
public final class ServiceGroup: @unchecked Sendable {
    public let services: [Service]
    public var onReload: (() -> Void)?
    public var onTick: (() -> Void)?
    public var onStopping: (() -> Void)?
    /// After every service started (systemd `READY=1`).
    public var onStarted: (() -> Void)?
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)

    public init(services: [Service], logger: Logger) {
        self.services = services
        self.logger = logger
    }

    public static let handledSignals = [SIGTERM, SIGINT, SIGHUP]

    /// Blocks the handled signals in the calling thread (and so in every thread it creates later).
    public static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handledSignals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Stops the group as SIGTERM would (tests, or a fatal condition found by a service).
    public func requestStop() {
        stopRequested.store(true, ordering: .releasing)
    }

    /// Starts every service in order; if one fails, stops those already started (in reverse) and
    /// rethrows. Then waits for a stop signal, and stops all services in reverse order.
    public func run() throws {
        var started: [Service] = []
        do {
            for s in services {
                try s.start()
                started.append(s)
                logger.debug("service \(s.name) started")
            }
        } catch {
            logger.error("service \(services[started.count].name) failed to start: \(error)")
            for s in started.reversed() { s.stop() }
            throw error
        }

        onStarted?()
        var set = sigset_t()
        sigemptyset(&set)
        for s in Self.handledSignals { sigaddset(&set, s) }
        var timeout = timespec(tv_sec: 0, tv_nsec: 250_000_000)
        while !stopRequested.load(ordering: .acquiring) {
            let sig = sigtimedwait(&set, nil, &timeout)
            if sig == SIGTERM || sig == SIGINT {
                logger.info("\(sig == SIGTERM ? "SIGTERM" : "SIGINT"): stopping")
                break
            }
            if sig == SIGHUP { onReload?() }
            onTick?()
        }
        onStopping?()
        for s in started.reversed() {
            logger.debug("stopping service \(s.name)")
            s.stop()
        }
    }
}

/// The inference thread: on stop, finishes (or after the drain timeout, errors) every queued job.
final class InferenceService: Service {
    let name = "inference"
    let core: DaemonCore
    let drainTimeoutS: @Sendable () -> Double

    init(core: DaemonCore, drainTimeoutS: @escaping @Sendable () -> Double) {
        self.core = core
        self.drainTimeoutS = drainTimeoutS
    }

    func start() throws { core.startWorker() }

    func stop() {
        core.beginShutdown(drainTimeoutS: drainTimeoutS())
        core.finishShutdown()
    }
}

/// The broker connection: on stop, publishes the final stats and the retained `offline`, waits for
/// the acknowledgements, and disconnects (so the will is not sent).
final class MQTTService: Service {
    let name = "mqtt"
    private let current: Mutex<MQTTClient>
    private let core: DaemonCore
    private let logger: Logger

    init(client: MQTTClient, core: DaemonCore, logger: Logger) {
        current = Mutex(client)
        self.core = core
        self.logger = logger
    }

    var client: MQTTClient { current.withLock { $0 } }

    func start() throws {
        let c = client
        c.setSubscriptions(core.subscriptions)
        try c.start()
    }

    /// Replaces the client (changed MQTT settings): the old one disconnects cleanly, without
    /// unsubscribing, so a session with the same client id is resumed by the new one.
    func replace(with fresh: MQTTClient) throws {
        let old = current.withLock { c -> MQTTClient in
            let old = c
            c = fresh
            return old
        }
        _ = old.waitForPublishes(timeoutS: 2)
        old.stop()
        core.replaceTransport(fresh)
        fresh.setSubscriptions(core.subscriptions)
        try fresh.start()
    }

    func stop() {
        let c = client
        core.publishStats()
        try? c.publish(topic: core.config.mqtt.statusTopic, payload: Array("offline".utf8), qos: 1, retain: true,
                       properties: MQTTPublishProperties())
        if !c.waitForPublishes(timeoutS: 5) {
            logger.warning("some messages were not acknowledged by the broker before disconnecting")
        }
        c.stop()
    }
}
