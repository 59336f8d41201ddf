import Platform
import Services

/// After a burst (a flood of messages, a plugin gone wild) the heap keeps the pages it grew to;
/// when the daemon is idle again — empty queue, empty outbox — this gives them back to the system
/// every few seconds, so the RSS returns close to its level before the burst.
final class HeapTrimService: Service {
    let name = "heap-trim"
    private let core: DaemonCore

    init(core: DaemonCore) { self.core = core }

    func run(_ context: ServiceContext) throws {
        context.ready()
        var after = residentBytes()
        while !context.waitForShutdown(seconds: 5) {
            guard core.queue.count == 0 && core.publisher.outboxCount == 0 else { continue }
            // Only when the RSS grew since the last trim (a trim walks the heap).
            if residentBytes() > after + (1 << 20) {
                releaseFreeHeap()
                after = residentBytes()
            }
        }
    }
}
