import Services

/// Publishes answers waiting in the outbox as soon as the client can take them (connected, and
/// fewer than `mqtt.outbox.max_messages` publishes unacknowledged). Connects flush it at once;
/// this catches the rest (acknowledgements freeing room, answers that waited for a slow broker).
final class OutboxService: Service {
    let name = "outbox"
    private let publisher: Publisher

    init(publisher: Publisher) { self.publisher = publisher }

    func run(_ context: ServiceContext) throws {
        context.ready()
        while !context.waitForShutdown(seconds: 0.1) {
            if publisher.outboxCount > 0 { publisher.flushOutbox() }
        }
    }
}
