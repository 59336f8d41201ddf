import Glibc
import Platform
import Services
import Synchronization
import Testing
import TestKit

/// A service that records when it is running and when it has stopped in a shared log.
final class RecordingService: Service {
    let name: String
    let failStart: Bool
    let endsBy: Bool
    let onLog: @Sendable (String) -> Void

    init(_ name: String, failStart: Bool = false, endsBy: Bool = false, log: @escaping @Sendable (String) -> Void) {
        self.name = name
        self.failStart = failStart
        self.endsBy = endsBy
        self.onLog = log
    }

    struct Failure: Error {}

    func run(_ context: ServiceContext) throws {
        if failStart { throw Failure() }
        onLog("start \(name)")
        context.ready()
        if endsBy {
            onLog("stop \(name)")
            throw Failure()
        }
        context.waitForShutdown()
        onLog("stop \(name)")
    }
}

final class EventLog: Sendable {
    let events = Mutex<[String]>([])
    func add(_ e: String) { events.withLock { $0.append(e) } }
    var all: [String] { events.withLock { $0 } }
}

@Suite struct ServiceGroupTests {
    @Test func startsInOrderAndStopsInReverse() throws {
        let events = EventLog()
        let group = ServiceGroup(services: ["mqtt", "inference", "plugins"].map { RecordingService($0, log: events.add) },
                                 logger: Logger(label: "test", handler: { _, _ in }))
        group.onStarted = { events.add("started") }
        group.onStopping = { events.add("stopping") }
        let done = Atomic<Bool>(false)
        let thread = TestThread(body: {
            try? group.run()
            done.store(true, ordering: .releasing)
        })
        #expect(poll(timeoutS: 5) { events.all.count == 4 })
        group.requestStop()
        #expect(poll(timeoutS: 5) { done.load(ordering: .acquiring) })
        thread.join()
        #expect(events.all == ["start mqtt", "start inference", "start plugins", "started", "stopping", "stop plugins", "stop inference", "stop mqtt"])
    }

    @Test func aFailedStartStopsTheStartedOnes() {
        let events = EventLog()
        let group = ServiceGroup(services: [RecordingService("a", log: events.add), RecordingService("b", failStart: true, log: events.add),
                                           RecordingService("c", log: events.add)], logger: Logger(label: "test", handler: { _, _ in }))
        #expect(throws: RecordingService.Failure.self) { try group.run() }
        #expect(events.all == ["start a", "stop a"])
    }

    /// The daemon's inference worker dying ends the process: a service that ends on its own
    /// shuts the others down in reverse order, and its error comes out of `run()`.
    @Test func aServiceThatEndsOnItsOwnStopsTheGroup() {
        let events = EventLog()
        let group = ServiceGroup(services: [RecordingService("mqtt", log: events.add), RecordingService("inference", endsBy: true, log: events.add),
                                           RecordingService("plugins", log: events.add)], logger: Logger(label: "test", handler: { _, _ in }))
        #expect(throws: RecordingService.Failure.self) { try group.run() }
        let e = events.all
        #expect(Set(e) == ["start mqtt", "start inference", "stop inference", "start plugins", "stop plugins", "stop mqtt"])
        #expect(e.count == 6)
        // The others are stopped in reverse order of their start (when the inference service
        // ended relative to the start of the plugins is up to the threads).
        #expect(e.firstIndex(of: "stop plugins")! < e.firstIndex(of: "stop mqtt")!)
        #expect(e.last == "stop mqtt")
    }
}

/// A pthread running a closure, joinable.
final class TestThread: @unchecked Sendable {
    private var tid = pthread_t()
    private let body: @Sendable () -> Void

    init(body: @escaping @Sendable () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { arg in
            let t = Unmanaged<TestThread>.fromOpaque(arg!).takeRetainedValue()
            t.body()
            return nil
        }, box)
    }

    func join() { pthread_join(tid, nil) }
}
