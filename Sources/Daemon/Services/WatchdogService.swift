import Platform
import Services

/// systemd's watchdog: `WATCHDOG=1` at half of `$WATCHDOG_USEC` (the notifier's interval) while
/// the group runs; idle when the unit has no watchdog.
final class WatchdogService: Service {
    let name = "watchdog"
    private let notifier: SystemdNotifier

    init(notifier: SystemdNotifier) { self.notifier = notifier }

    func run(_ context: ServiceContext) throws {
        context.ready()
        guard let interval = notifier.watchdogIntervalS else {
            context.waitForShutdown()
            return
        }
        while !context.waitForShutdown(seconds: interval) {
            notifier.notify("WATCHDOG=1")
        }
    }
}
