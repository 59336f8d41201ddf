@testable import Daemon
import Glibc
import Platform
import Synchronization
import Testing

/// A service that records its start and stop in a shared log.
final class RecordingService: Service {
    let name: String
    let failStart: Bool
    let onLog: @Sendable (String) -> Void

    init(_ name: String, failStart: Bool = false, log: @escaping @Sendable (String) -> Void) {
        self.name = name
        self.failStart = failStart
        self.onLog = log
    }

    struct Failure: Error {}

    func start() throws {
        if failStart { throw Failure() }
        onLog("start \(name)")
    }

    func stop() { onLog("stop \(name)") }
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
                                 logger: Logger(label: "test"))
        let ticks = Atomic<Int>(0)
        group.onTick = { ticks.add(1, ordering: .relaxed) }
        group.onStopping = { events.add("stopping") }
        let done = Atomic<Bool>(false)
        let thread = TestThread(body: {
            try? group.run()
            done.store(true, ordering: .releasing)
        })
        #expect(poll(timeoutS: 5) { events.all.count == 3 && ticks.load(ordering: .relaxed) >= 1 })
        group.requestStop()
        #expect(poll(timeoutS: 5) { done.load(ordering: .acquiring) })
        thread.join()
        #expect(events.all == ["start mqtt", "start inference", "start plugins", "stopping", "stop plugins", "stop inference", "stop mqtt"])
    }

    @Test func aFailedStartStopsTheStartedOnes() {
        let events = EventLog()
        let group = ServiceGroup(services: [RecordingService("a", log: events.add), RecordingService("b", failStart: true, log: events.add),
                                           RecordingService("c", log: events.add)], logger: Logger(label: "test"))
        #expect(throws: RecordingService.Failure.self) { try group.run() }
        #expect(events.all == ["start a", "stop a"])
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
