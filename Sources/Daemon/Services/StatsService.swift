import Services

/// Publishes the stats document (retained) every `stats.interval_s` seconds (0: never; the
/// interval follows SIGHUP). The final document of a clean stop is the MQTT service's.
final class StatsService: Service {
    let name = "stats"
    private let core: DaemonCore

    init(core: DaemonCore) { self.core = core }

    func run(_ context: ServiceContext) throws {
        context.ready()
        while true {
            let interval = core.config.stats.intervalS
            // With stats off, look again now and then in case a reload turns them on.
            if context.waitForShutdown(seconds: interval > 0 ? Double(interval) : 1) { return }
            if interval > 0 { core.publishStats() }
        }
    }
}
