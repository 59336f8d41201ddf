import BitNet
import DaemonConfig
import Glibc
import JSONValue
import Platform
import Synchronization

/// The back of the message path: takes jobs from the queue one at a time (decide jobs of one route
/// in batches, `queue.batch_max`), runs them on the engine, and hands decisions and failures to
/// the publisher. Owns the drain deadline, the prefix-cache lifetime (a reload marks the engine's
/// cached prefixes stale; they are dropped here, on the inference thread, because the engine is
/// not thread-safe) and the debounce state of plugin routes.
///
/// `run()` is the inference thread's whole life (the `InferenceService` calls it on its own
/// thread); it returns when the queue is finished and empty after `beginShutdown`.
public final class InferenceWorker: @unchecked Sendable {
    // @unchecked: `holdWhileExists` is set before `run()` starts and never changed.
    private let backend: InferenceBackend
    /// The engines of `routes[].model` files, by resolved path (loaded once at start-up).
    private let routeBackends: [String: InferenceBackend]
    private let queue: JobQueue
    private let publisher: Publisher
    private let stats: Stats
    private let logger = Logger(label: "bitnetd")
    private let batchMax: Atomic<Int>
    /// Monotonic ns after which queued jobs are answered with `shutting_down` instead of computed; 0 = none.
    private let drainDeadline = Atomic<UInt64>(0)
    private let prefixCacheStale = Atomic<Bool>(false)
    /// Debounce state of plugin routes, per route and output topic.
    private let debouncers = Mutex<[String: Debouncer]>([:])
    /// Test hook (`BITNETD_TEST_HOLD_JOBS`): while this file exists, the inference thread holds
    /// each job it has taken before computing it. Lets end-to-end tests fill the queue and signal
    /// the process at a known point instead of racing the CPU. Never set in production.
    public var holdWhileExists: String?

    public init(config: BitnetdConfig, backend: InferenceBackend, routeBackends: [String: InferenceBackend] = [:],
                queue: JobQueue, publisher: Publisher, stats: Stats) {
        self.backend = backend
        self.routeBackends = routeBackends
        self.queue = queue
        self.publisher = publisher
        self.stats = stats
        batchMax = Atomic(config.queue.batchMax)
    }

    public var modelName: String { backend.modelName }

    /// The model files this worker has engines for besides `model.path`; a configuration whose
    /// routes name any other file needs a restart.
    public var loadedRouteModels: Set<String> { Set(routeBackends.keys) }

    /// The engine a route runs on: its own `model:` file, else the main model.
    func backend(for route: RouteConfig) -> InferenceBackend {
        route.model.flatMap { routeBackends[$0] } ?? backend
    }

    /// A reloaded configuration: the engine's cached prompt prefixes go before the next job, and
    /// debounce state starts afresh.
    public func apply(_ config: BitnetdConfig) {
        batchMax.store(config.queue.batchMax, ordering: .relaxed)
        prefixCacheStale.store(true, ordering: .releasing)
        debouncers.withLock { $0 = [:] }
    }

    /// Runs jobs until the queue is finished (see `beginShutdown`). Call on the inference thread.
    public func run() {
        while let jobs = queue.popBatch(max: batchMax.load(ordering: .relaxed)) {
            if let hold = holdWhileExists, access(hold, F_OK) == 0 {
                logger.info("test hook: holding job \(jobs[0].id) while \(hold) exists")
                while access(hold, F_OK) == 0 { usleep(5_000) }
            }
            if jobs.count == 1 { run(jobs[0]) } else { runBatch(jobs) }
        }
    }

    /// Starts the drain: queued jobs — and messages still arriving until the DISCONNECT — are
    /// computed until `drainTimeoutS` passes; after that they are answered `shutting_down`.
    public func beginShutdown(drainTimeoutS: Double) {
        drainDeadline.store(monotonicNanoseconds() + UInt64(drainTimeoutS * 1e9), ordering: .relaxed)
        queue.finishWhenEmpty()
        logger.info("draining: \(queue.count) queued jobs, computed for at most \(drainTimeoutS) s (queue.drain_timeout_s)")
    }

    private func pastDrainDeadline() -> Bool {
        let d = drainDeadline.load(ordering: .relaxed)
        return d != 0 && monotonicNanoseconds() > d
    }

    /// False (and the job answered with an error) when it must not be computed any more.
    private func stillWanted(_ job: Job) -> Bool {
        if pastDrainDeadline() {
            publisher.fail(job, BadInput("shutting_down", "the daemon stopped before this job could run (queue.drain_timeout_s)"))
            return false
        }
        if let e = job.expiresAt, monotonicNanoseconds() > e {
            publisher.fail(job, BadInput("expired", "the request's MQTT message expiry passed before it could run"))
            return false
        }
        return true
    }

    private func dropStalePrefixCache() {
        if prefixCacheStale.exchange(false, ordering: .acquiringAndReleasing) {
            backend.invalidatePrefixCache()
            for b in routeBackends.values { b.invalidatePrefixCache() }
        }
    }

    /// Decide jobs of one route, decided together (`queue.batch_max`).
    func runBatch(_ jobs: [Job]) {
        let live = jobs.filter(stillWanted)
        guard let route = live.first?.route else { return }
        live.forEach(logPrompt)
        dropStalePrefixCache()
        let results = backend(for: route).decide(batch: live.map { Engine.DecideRequest(prompt: $0.prompt, labels: route.labels) },
                                     cacheKey: route.name)
        logger.debug("route \(route.name): \(live.count) queued decisions decided together")
        for (job, r) in zip(live, results) {
            switch r {
            case .success(let d): finishDecide(job, d)
            case .failure(let e): publisher.fail(job, BadInput("inference_failed", "\(e)"))
            }
        }
    }

    private func finishDecide(_ job: Job, _ r: DecideResult) {
        let route = job.route
        guard r.probabilities.allSatisfy({ $0.isFinite }) else {
            publisher.fail(job, BadInput("inference_failed", "the model produced non-finite probabilities \(r.probabilities); the model file is probably corrupt"))
            return
        }
        let top = r.probabilities[r.best]
        let label = top >= route.minConfidence ? r.labels[r.best] : "unsure"
        let latency = Double(monotonicNanoseconds() - job.receivedAt) / 1e6
        if !debounced(job, value: label) { return }
        let doc = Payloads.decision(
            route: route.name, inputTopic: job.inputTopic, label: label,
            probabilities: Array(zip(r.labels, r.probabilities)), text: nil,
            promptTokens: r.promptTokens, cachedTokens: r.cachedTokens, generatedTokens: 0,
            latencyMs: latency, model: backend(for: route).modelName, ts: isoTimestamp(), correlation: job.correlationData)
        publisher.publishDecision(job, doc)
        stats.decided(latencyMs: latency, tokens: r.promptTokens - r.cachedTokens, engineMs: r.elapsedMs / Double(r.batchSize))
    }

    func run(_ job: Job) {
        guard stillWanted(job) else { return }
        dropStalePrefixCache()
        let route = job.route
        logPrompt(job)
        do {
            switch route.task {
            case .decide:
                finishDecide(job, try backend(for: route).decide(prompt: job.prompt, labels: route.labels, cacheKey: route.name))
            case .generate, .extract:
                try runGeneration(job)
            }
        } catch {
            publisher.fail(job, BadInput("inference_failed", "\(error)"))
        }
    }

    /// A generate or extract job: free text, or JSON valid for the route's schema (whose parsed
    /// value may choose the output topic, `{{value.F}}`).
    private func runGeneration(_ job: Job) throws {
        let route = job.route
        var options = GenerateOptions()
        options.maxTokens = route.maxTokens
        options.temperature = route.temperature
        options.chat = route.chat
        if route.task == .extract { options.schema = route.schema } else { options.stop = route.stop }
        let r: GenerateResult
        do {
            r = try backend(for: route).generate(prompt: job.prompt, options: options) { [self] _ in !pastDrainDeadline() }
        } catch let e as SchemaFailure {
            publisher.fail(job, BadInput("schema_failed", e.description))
            return
        }
        if r.stopReason == .cancelled {
            publisher.fail(job, BadInput("shutting_down", "generation cancelled: the daemon is stopping"))
            return
        }
        var answered = job
        var extracted: (value: JSON, forced: Int)?
        if route.task == .extract {
            guard let value = try? JSON.parse(r.text) else {
                publisher.fail(job, BadInput("schema_failed", "the generated text is not JSON: \(r.text.prefix(200))"))
                return
            }
            extracted = (value, r.forcedTokens)
            if route.outputTopic.readsValue && !job.isResponse {
                switch Router.renderOutputTopic(route: route, inputTopic: job.inputTopic, value: value) {
                case .success(let t): answered.replyTopic = t
                case .failure(let bad):
                    publisher.fail(job, bad)
                    return
                }
            }
        }
        let latency = Double(monotonicNanoseconds() - job.receivedAt) / 1e6
        if !debounced(answered, value: r.text) { return }
        let doc = Payloads.decision(
            route: route.name, inputTopic: job.inputTopic, label: nil, probabilities: [], text: r.text,
            promptTokens: r.promptTokens, cachedTokens: r.cachedTokens, generatedTokens: r.generatedTokens,
            latencyMs: latency, model: backend(for: route).modelName, ts: isoTimestamp(), correlation: job.correlationData,
            extracted: extracted)
        publisher.publishDecision(answered, doc)
        stats.decided(latencyMs: latency, tokens: r.promptTokens - r.cachedTokens + r.generatedTokens,
                      engineMs: r.promptMs + r.generateMs)
    }

    /// `log.level: debug` shows the exact prompt of every job (`bitnetd prompt` renders the same
    /// bytes offline), as a JSON string so newlines and control characters stay on one line.
    private func logPrompt(_ job: Job) {
        logger.debug("job \(job.id) route \(job.route.name): prompt \(JSON.string(job.prompt).serialized)")
    }

    /// False when a `debounce:` route must hold this decision back (same as the last one
    /// published, or too soon after it).
    private func debounced(_ job: Job, value: String) -> Bool {
        guard let d = job.route.debounce else { return true }
        let key = job.route.name + "\u{0}" + job.replyTopic
        let publish = debouncers.withLock { all in
            var deb = all[key] ?? Debouncer(onChange: d.onChange, minInterval: d.minIntervalS)
            let ok = deb.shouldPublish(value, now: monotonicSeconds())
            all[key] = deb
            return ok
        }
        if !publish { logger.debug("route \(job.route.name): decision '\(value)' held back (debounce)") }
        return publish
    }
}
