import Synchronization

/// A long-running part of a program, after swift-service-lifecycle's `Service` (which needs Swift
/// 6.2): its whole lifetime is one call, `run(_:)`, made on a thread of its own (never Swift's
/// cooperative pool — services block: a socket loop, an inference thread, a timer).
///
/// `run` sets the service up, calls `context.ready()`, works until `context` says the group is
/// shutting down, cleans up and returns. A service whose `run` returns or throws on its own ends
/// the group (services that must survive faults — a broker restart, a crashing plugin child —
/// retry inside `run` and do not return).
public protocol Service: AnyObject, Sendable {
    var name: String { get }
    func run(_ context: ServiceContext) throws
}

/// What a running service is told by, and tells, its group.
public final class ServiceContext: Sendable {
    private struct State {
        var ready = false
        var shuttingDown = false
        var finished = false
        var onShutdown: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())
    private let changed = Condition()

    public init() {}

    /// The service is up: the group starts the next one.
    public func ready() {
        state.withLock { $0.ready = true }
        changed.broadcast()
    }

    public var isReady: Bool { state.withLock { $0.ready } }
    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }
    public var hasFinished: Bool { state.withLock { $0.finished } }

    /// Calls `handler` once when the group starts shutting down (at once if it already has): for
    /// a service whose thread is blocked elsewhere (a queue) and must be woken.
    public func onShutdown(_ handler: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.shuttingDown { return true }
            s.onShutdown.append(handler)
            return false
        }
        if now { handler() }
    }

    /// Blocks until the group shuts down or `seconds` pass; true when shutting down.
    @discardableResult
    public func waitForShutdown(seconds: Double = .infinity) -> Bool {
        changed.wait(seconds: seconds) { self.state.withLock { $0.shuttingDown } }
    }

    // MARK: Group side

    func triggerShutdown() {
        let handlers = state.withLock { s -> [@Sendable () -> Void] in
            guard !s.shuttingDown else { return [] }
            s.shuttingDown = true
            defer { s.onShutdown = [] }
            return s.onShutdown
        }
        changed.broadcast()
        for h in handlers { h() }
    }

    func markFinished() {
        state.withLock { $0.finished = true }
        changed.broadcast()
    }

    /// Blocks until the service is ready or has finished (failed to start).
    func waitUntilReadyOrFinished() {
        changed.wait(seconds: .infinity) { self.state.withLock { $0.ready || $0.finished } }
    }
}
