import Services

/// The inference thread as a service: `run` is the thread. On shutdown it finishes (or, after
/// the drain timeout, answers `shutting_down` to) every queued job, then refuses new messages and
/// answers any that slipped in. If it ends on its own the group — and the daemon — stops.
final class InferenceService: Service {
    let name = "inference"
    let core: DaemonCore
    let drainTimeoutS: @Sendable () -> Double

    init(core: DaemonCore, drainTimeoutS: @escaping @Sendable () -> Double) {
        self.core = core
        self.drainTimeoutS = drainTimeoutS
    }

    func run(_ context: ServiceContext) throws {
        let (core, drain) = (self.core, drainTimeoutS)
        context.onShutdown { core.beginShutdown(drainTimeoutS: drain()) }
        context.ready()
        core.inference.run()
        core.refuseAndAnswerTheRest()
    }
}
