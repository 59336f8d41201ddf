import Glibc
import Platform
import Synchronization

/// Runs services, each `run` on a thread of its own, and handles the process signals (the
/// swift-service-lifecycle pattern, which itself needs Swift 6.2).
///
/// Start: in order, each service's thread is started and the group waits for its `ready()`; a
/// service that ends before it is ready failed to start — the ones already running are shut down
/// in reverse order and its error is thrown. Then the calling (main) thread waits for a signal:
/// SIGTERM/SIGINT shut the group down, SIGHUP calls `onReload`. A service whose `run` returns or
/// throws on its own also shuts the group down (the daemon's inference worker dying ends the
/// process; services that must survive faults retry inside `run`). Shutdown: in reverse order,
/// each service is told (`ServiceContext`) and its thread joined before the next is told.
///
/// `blockSignals()` must run before any thread is created so that SIGTERM, SIGINT and SIGHUP are
/// only ever taken here, by `sigtimedwait`.
public final class ServiceGroup: @unchecked Sendable {
    // @unchecked: the hooks are set before `run()` and only read by the thread running it.
    public let services: [Service]
    /// SIGHUP.
    public var onReload: (() -> Void)?
    /// After every service is ready (systemd `READY=1`).
    public var onStarted: (() -> Void)?
    /// When the shutdown begins (systemd `STOPPING=1`).
    public var onStopping: (() -> Void)?
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)

    /// A service ended on its own (returned without error) while the group was running.
    public struct ServiceEnded: Error, CustomStringConvertible {
        public var service: String
        public var description: String { "service \(service) ended unexpectedly" }
    }

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

    /// Shuts the group down as SIGTERM would (tests, or a fatal condition found by a service).
    public func requestStop() {
        stopRequested.store(true, ordering: .releasing)
    }

    private final class Running: @unchecked Sendable {
        // @unchecked: `error` is written by the service thread before `markFinished()` and read
        // after `hasFinished` or the join.
        let service: Service
        let context = ServiceContext()
        var thread = pthread_t()
        var error: Error?
        init(_ service: Service) { self.service = service }
    }

    /// Starts every service in order, waits for a stop signal (or a service ending), shuts the
    /// services down in reverse order. Throws the error of a service that failed to start or
    /// failed while running.
    public func run() throws {
        var running: [Running] = []
        for s in services {
            let r = Running(s)
            let rc = startThread(r)
            if rc != 0 {
                logger.error("service \(s.name) failed to start: pthread_create: \(errnoDescription(rc))")
                shutDown(running)
                throw SystemError("pthread_create", detail: "cannot start service \(s.name)", code: rc)
            }
            r.context.waitUntilReadyOrFinished()
            if !r.context.isReady {
                pthread_join(r.thread, nil)
                let error = r.error ?? ServiceEnded(service: s.name)
                logger.error("service \(s.name) failed to start: \(error)")
                shutDown(running)
                throw error
            }
            logger.debug("service \(s.name) started")
            running.append(r)
        }

        onStarted?()
        var set = sigset_t()
        sigemptyset(&set)
        for s in Self.handledSignals { sigaddset(&set, s) }
        var timeout = timespec(tv_sec: 0, tv_nsec: 250_000_000)
        var ended: Running?
        while !stopRequested.load(ordering: .acquiring) {
            if let r = running.first(where: { $0.context.hasFinished }) {
                ended = r
                logger.critical("service \(r.service.name) ended: \(r.error.map { "\($0)" } ?? "returned"); stopping")
                break
            }
            let sig = sigtimedwait(&set, nil, &timeout)
            if sig == SIGTERM || sig == SIGINT {
                logger.info("\(sig == SIGTERM ? "SIGTERM" : "SIGINT"): stopping")
                break
            }
            if sig == SIGHUP { onReload?() }
        }
        onStopping?()
        shutDown(running)
        if let ended { throw ended.error ?? ServiceEnded(service: ended.service.name) }
    }

    private func shutDown(_ running: [Running]) {
        for r in running.reversed() {
            logger.debug("stopping service \(r.service.name)")
            r.context.triggerShutdown()
            pthread_join(r.thread, nil)
        }
    }

    private func startThread(_ r: Running) -> Int32 {
        let box = Unmanaged.passRetained(r).toOpaque()
        let rc = pthread_create(&r.thread, nil, { arg in
            let r = Unmanaged<Running>.fromOpaque(arg!).takeRetainedValue()
            do {
                try r.service.run(r.context)
            } catch {
                r.error = error
            }
            r.context.markFinished()
            return nil
        }, box)
        if rc != 0 { Unmanaged<Running>.fromOpaque(box).release() }
        return rc
    }
}
