import Mosquitto
import Platform
import Services
import Synchronization

/// The broker connection as a service: started first and stopped last, so every answer has a
/// connection. On shutdown it publishes the final stats and the retained `offline`, waits for the
/// acknowledgements, and disconnects (so the will is not sent). A lost connection is retried by
/// the client; it never ends the group.
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

    func run(_ context: ServiceContext) throws {
        let c = client
        c.setSubscriptions(core.subscriptions)
        try c.start()
        context.ready()
        context.waitForShutdown()
        let last = client
        // What is still waiting goes now if the broker is there (a stop while disconnected loses
        // the outbox: docs/daemon.md "What survives").
        core.publisher.flushOutbox()
        core.publishStats()
        core.publisher.publishOffline()
        if !last.waitForPublishes(timeoutS: 5) {
            logger.warning("some messages were not acknowledged by the broker before disconnecting")
        }
        last.stop()
    }

    /// Replaces the client (changed MQTT settings) without losing an answer: answers go to the
    /// new client (its outbox until it connects) from the start; the old one gets a moment to have
    /// its publishes acknowledged, disconnects cleanly (without unsubscribing, so a session with
    /// the same client id is resumed), and whatever it could not get acknowledged is handed to the
    /// new one, ahead of the answers waiting (QoS 1: at least once — a message the broker took but
    /// whose acknowledgement was lost arrives twice).
    func replace(with fresh: MQTTClient) throws {
        let old = current.withLock { c -> MQTTClient in
            let old = c
            c = fresh
            return old
        }
        core.publisher.replaceTransport(fresh)
        _ = old.waitForPublishes(timeoutS: 2)
        old.stop()
        core.publisher.replaceTransport(fresh, carrying: old.takeUnacknowledged())
        fresh.setSubscriptions(core.subscriptions)
        try fresh.start()
    }
}
