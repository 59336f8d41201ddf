import BitNet
import DaemonConfig
import Glibc
import Mosquitto
import Platform
import SensorPlugins

/// The daemon's message path, wired: `Intake` (message or reading → route → job) → the bounded
/// `JobQueue` → `InferenceWorker` (the engine) → `Publisher` (decisions and errors on MQTT).
/// Independent of the process (signals, config files, the real broker client), so unit tests
/// drive it with an in-memory transport and backend; `bitnetd run` builds the same parts and runs
/// them as services (`Services/`).
public final class DaemonCore: @unchecked Sendable {
    // @unchecked: `worker` (the test thread) is touched only by `startWorker`/`finishShutdown` on
    // one thread; everything else is immutable or thread-safe.
    public let queue: JobQueue
    public let stats: Stats
    public let publisher: Publisher
    public let intake: Intake
    public let inference: InferenceWorker
    private var worker: pthread_t?

    /// `routeBackends`: the engines of `routes[].model` files, by resolved path.
    /// `kernel`: the kernel path in use and those skipped because their start-up self-test failed
    /// (reported in the stats document).
    public init(config: BitnetdConfig, backend: InferenceBackend, routeBackends: [String: InferenceBackend] = [:],
                transport: MQTTTransport, kernel: (path: String, skipped: [String]) = ("", [])) {
        stats = Stats()
        queue = JobQueue(capacity: config.queue.size, policy: config.queue.overflow)
        publisher = Publisher(config: config, transport: transport, stats: stats, modelName: backend.modelName,
                              routeModelNames: routeBackends.mapValues(\.modelName), kernel: kernel)
        intake = Intake(config: config, queue: queue, publisher: publisher, stats: stats)
        inference = InferenceWorker(config: config, backend: backend, routeBackends: routeBackends, queue: queue, publisher: publisher, stats: stats)
    }

    public var config: BitnetdConfig { intake.config }
    public var subscriptions: [MQTTSubscription] { intake.subscriptions }

    public func handle(_ message: MQTTMessage) { intake.handle(message) }
    public func handle(reading: Reading, topic: String) { intake.handle(reading: reading, topic: topic) }

    /// Applies a reloaded configuration to every part: routes, limits, queue size and policy,
    /// topics and discovery; windows, debounce state and cached prefixes start afresh. (MQTT
    /// connection and model changes are the caller's business.)
    public func apply(_ config: BitnetdConfig) {
        intake.apply(config)
        inference.apply(config)
        publisher.transport.setSubscriptions(intake.subscriptions)
        publisher.apply(config)
    }

    public func publishStats() { publisher.publishStats(queue: queue.count) }

    // MARK: Shutdown

    /// Starts the drain (see `InferenceWorker.beginShutdown`).
    public func beginShutdown(drainTimeoutS: Double) {
        inference.beginShutdown(drainTimeoutS: drainTimeoutS)
    }

    /// After the inference thread has emptied the queue: refuses new messages (they are answered
    /// `shutting_down`) and answers any job that slipped in meanwhile.
    public func refuseAndAnswerTheRest() {
        intake.stopAccepting()
        queue.close()
        for job in queue.removeAll() {
            publisher.fail(job, BadInput("shutting_down", "the daemon is stopping"))
        }
    }

    // MARK: A thread of its own (unit tests; the daemon runs `InferenceService`)

    public func startWorker() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let core = Unmanaged<DaemonCore>.fromOpaque(arg!).takeRetainedValue()
            core.inference.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        worker = tid
    }

    /// Waits for the worker thread to empty the queue, then refuses and answers the rest.
    public func finishShutdown() {
        if let w = worker {
            pthread_join(w, nil)
            worker = nil
        }
        refuseAndAnswerTheRest()
    }
}
