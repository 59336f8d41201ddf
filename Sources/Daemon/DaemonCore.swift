import BitNet
import DaemonConfig
import Glibc
import JSONValue
import Mosquitto
import Platform
import SensorPlugins
import Synchronization

/// The daemon's message path: MQTT message → routes → bounded queue → one inference thread →
/// decision or error on MQTT. Independent of the process (signals, config files, the real broker
/// client), so unit tests drive it with an in-memory transport and backend.
///
/// Threads: `handle(_:)` runs on the MQTT network thread; jobs run on the core's own inference
/// thread (a plain pthread, never Swift's cooperative pool); `apply`, `beginShutdown` and
/// `finishShutdown` are called from the main thread.
public final class DaemonCore: @unchecked Sendable {
    private struct State {
        var router: Router
        var config: BitnetdConfig
        var transport: MQTTTransport
        var accepting = true
        /// Reading windows of `input: plugin` routes, per route and reading topic.
        var windows: [String: ReadingWindow] = [:]
        /// Home Assistant discovery topics published (retained) under the current configuration.
        var discoveryTopics: [String] = []
    }

    private let state: Mutex<State>
    public let queue: JobQueue
    public let stats = Stats()
    private let backend: InferenceBackend
    private let logger = Logger(label: "bitnetd")
    private let nextID = Atomic<UInt64>(1)
    /// Monotonic ns after which queued jobs are answered with `shutting_down` instead of computed; 0 = none.
    private let drainDeadline = Atomic<UInt64>(0)
    private let busy = Atomic<Bool>(false)
    /// Set by a reload; the inference thread drops the engine's prefix cache before its next job
    /// (the engine is not thread-safe, so it is never touched from the reload thread).
    private let prefixCacheStale = Atomic<Bool>(false)
    private var worker: pthread_t?
    /// Debounce state of plugin routes, per route and output topic (used on the inference thread).
    private let debouncers = Mutex<[String: Debouncer]>([:])
    /// Test hook (`BITNETD_TEST_HOLD_JOBS`): while this file exists, the inference thread holds
    /// each job it has taken before computing it. Lets end-to-end tests fill the queue and signal
    /// the process at a known point instead of racing the CPU. Never set in production.
    public var holdWhileExists: String?

    public init(config: BitnetdConfig, backend: InferenceBackend, transport: MQTTTransport) {
        self.backend = backend
        self.queue = JobQueue(capacity: config.queue.size, policy: config.queue.overflow)
        self.state = Mutex(State(router: Router(routes: config.routes, maxPayloadBytes: config.limits.maxPayloadBytes),
                                 config: config, transport: transport))
    }

    public var config: BitnetdConfig { state.withLock { $0.config } }
    public var subscriptions: [MQTTSubscription] { state.withLock { $0.router.subscriptions } }
    public var transport: MQTTTransport { state.withLock { $0.transport } }

    public func replaceTransport(_ t: MQTTTransport) { state.withLock { $0.transport = t } }

    /// Applies a reloaded configuration: routes, limits, queue size and policy. (MQTT and model
    /// changes are the caller's business.)
    /// Reading windows and debounce state start afresh.
    public func apply(_ config: BitnetdConfig) {
        let (transport, connected) = state.withLock { s -> (MQTTTransport, Bool) in
            s.router = Router(routes: config.routes, maxPayloadBytes: config.limits.maxPayloadBytes)
            s.config = config
            s.windows = [:]
            return (s.transport, s.transport.isConnected)
        }
        prefixCacheStale.store(true, ordering: .releasing)
        debouncers.withLock { $0 = [:] }
        queue.reconfigure(capacity: config.queue.size, policy: config.queue.overflow)
        transport.setSubscriptions(subscriptions)
        if connected { publishDiscovery() }
    }

    // MARK: Incoming (MQTT thread)

    /// Announces `online` (retained) after every connect; the will says `offline`.
    public func connected() {
        let (t, topic) = state.withLock { ($0.transport, $0.config.mqtt.statusTopic) }
        try? t.publish(topic: topic, payload: Array("online".utf8), qos: 1, retain: true, properties: MQTTPublishProperties())
        publishDiscovery()
    }

    /// Home Assistant discovery: a retained config message per decide route (`homeassistant:`),
    /// and an empty retained message for each one published before that is no longer configured.
    public func publishDiscovery() {
        let (t, config, old) = state.withLock { ($0.transport, $0.config, $0.discoveryTopics) }
        let plan = HomeAssistantDiscovery.messages(config: config, model: backend.modelName)
        for line in plan.skipped { logger.info("homeassistant: \(line)") }
        let fresh = plan.messages.map(\.topic)
        for topic in old where !fresh.contains(topic) {
            logger.info("homeassistant: removing \(topic)")
            try? t.publish(topic: topic, payload: [], qos: 1, retain: true, properties: MQTTPublishProperties())
        }
        for m in plan.messages {
            do {
                try t.publish(topic: m.topic, payload: Array(m.payload.serialized.utf8), qos: 1, retain: true,
                              properties: MQTTPublishProperties(contentType: "application/json"))
            } catch {
                logger.error("homeassistant: cannot publish \(m.topic): \(error)")
            }
        }
        if !plan.messages.isEmpty { logger.debug("homeassistant: \(plan.messages.count) discovery messages") }
        state.withLock { $0.discoveryTopics = fresh }
    }

    public func handle(_ message: MQTTMessage) {
        stats.received()
        let (router, accepting) = state.withLock { ($0.router, $0.accepting) }
        let routes = router.matchingRoutes(topic: message.topic)
        if routes.isEmpty {
            logger.debug("no route for topic \(message.topic)")
            return
        }
        for route in routes {
            guard accepting else {
                publishError(route: route, inputTopic: message.topic, BadInput("shutting_down", "the daemon is stopping"),
                             responseTopic: message.responseTopic, correlation: message.correlationData)
                continue
            }
            switch router.prepare(route: route, message: message) {
            case .failure(let bad):
                publishError(route: route, inputTopic: message.topic, bad, responseTopic: message.responseTopic,
                             correlation: message.correlationData)
            case .success(let (prompt, output)):
                let expires = message.messageExpiry.map { message.receivedAt + UInt64($0) * 1_000_000_000 }
                let job = Job(id: nextID.add(1, ordering: .relaxed).oldValue, route: route, prompt: prompt,
                              inputTopic: message.topic, replyTopic: message.responseTopic ?? output,
                              isResponse: message.responseTopic != nil, correlationData: message.correlationData,
                              receivedAt: message.receivedAt, expiresAt: expires)
                enqueue(job)
            }
        }
    }

    /// A sensor reading fed straight into the routes (DESIGN.md §6 "Readings go into routes
    /// directly"): each `input: plugin` route whose filter matches `topic` gets it like a message
    /// on `topic` whose payload is the reading's fields; a windowed route first adds it to its
    /// window (one per route and topic) and renders `{{window.…}}` from that.
    public func handle(reading: Reading, topic: String) {
        let (router, accepting) = state.withLock { ($0.router, $0.accepting) }
        let routes = router.readingRoutes(topic: topic)
        guard !routes.isEmpty, accepting else { return }
        let payload = Array(JSON.object(reading.fields).serialized.utf8)
        let message = MQTTMessage(topic: topic, payload: payload)
        for route in routes {
            var window: ReadingWindow?
            if let w = route.window {
                let key = route.name + "\u{0}" + topic
                window = state.withLock { s -> ReadingWindow in
                    var win = s.windows[key] ?? ReadingWindow(maxCount: w.count, span: w.spanS)
                    win.append(reading, now: wallClock())
                    s.windows[key] = win
                    return win
                }
            }
            switch router.prepare(route: route, message: message, window: window) {
            case .failure(let bad):
                publishError(route: route, inputTopic: topic, bad, responseTopic: nil, correlation: nil)
            case .success(let (prompt, output)):
                let job = Job(id: nextID.add(1, ordering: .relaxed).oldValue, route: route, prompt: prompt,
                              inputTopic: topic, replyTopic: output, isResponse: false, correlationData: nil,
                              receivedAt: monotonicNanoseconds(), expiresAt: nil)
                enqueue(job)
            }
        }
    }

    /// Publishes a plugin reading on `topic` (plugins with `publish: true`), payload
    /// `{"ts": …, fields…}` (DESIGN.md §6).
    public func publish(reading: Reading, topic: String) {
        let t = transport
        let doc = reading.payload(ts: .string(isoTimestamp(reading.timestamp)))
        do {
            try t.publish(topic: topic, payload: Array(doc.serialized.utf8), qos: 0, retain: false,
                          properties: MQTTPublishProperties(contentType: "application/json"))
        } catch {
            logger.debug("cannot publish a reading to \(topic): \(error)")
        }
    }

    /// A plugin's run-time problem: one log line and an error document (DESIGN.md §8) on the
    /// daemon's error topic, `route` null, `input_topic` the plugin's base topic.
    public func publishPluginError(_ settings: PluginSettings, _ error: PluginError) {
        stats.error()
        let (t, topic, prefix) = state.withLock { ($0.transport, $0.config.mqtt.errorTopic, $0.config.mqtt.topicPrefix) }
        logger.warning("plugin \(settings.name) (\(settings.id)): \(error.code): \(error.message)")
        let doc = Payloads.error(route: nil, inputTopic: settings.baseTopic(prefix: prefix), error: error.code,
                                 detail: "plugin \(settings.name): \(error.message)", ts: isoTimestamp())
        try? t.publish(topic: topic, payload: Array(doc.serialized.utf8), qos: 1, retain: false,
                       properties: MQTTPublishProperties(contentType: "application/json"))
    }

    func enqueue(_ job: Job) {
        switch queue.push(job) {
        case .queued:
            break
        case .rejected(let j):
            stats.dropped()
            let accepting = state.withLock { $0.accepting }
            let bad = accepting
                ? BadInput("queue_full", "the job queue is full (\(config.queue.size) jobs; queue.overflow: reject)")
                : BadInput("shutting_down", "the daemon is stopping")
            fail(j, bad)
        case .evicted(let old):
            stats.dropped()
            fail(old, BadInput("dropped", "dropped from a full queue to make room for a newer message (queue.overflow: drop_oldest)"))
        }
    }

    // MARK: Inference thread

    public func startWorker() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let core = Unmanaged<DaemonCore>.fromOpaque(arg!).takeRetainedValue()
            core.workerLoop()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        worker = tid
    }

    private func workerLoop() {
        while let jobs = queue.popBatch(max: config.queue.batchMax) {
            busy.store(true, ordering: .relaxed)
            if let hold = holdWhileExists, access(hold, F_OK) == 0 {
                logger.info("test hook: holding job \(jobs[0].id) while \(hold) exists")
                while access(hold, F_OK) == 0 { usleep(5_000) }
            }
            if jobs.count == 1 { run(jobs[0]) } else { runBatch(jobs) }
            busy.store(false, ordering: .relaxed)
        }
    }

    private func pastDrainDeadline() -> Bool {
        let d = drainDeadline.load(ordering: .relaxed)
        return d != 0 && monotonicNanoseconds() > d
    }

    /// False (and the job answered with an error) when it must not be computed any more.
    private func stillWanted(_ job: Job) -> Bool {
        if pastDrainDeadline() {
            fail(job, BadInput("shutting_down", "the daemon stopped before this job could run (queue.drain_timeout_s)"))
            return false
        }
        if let e = job.expiresAt, monotonicNanoseconds() > e {
            fail(job, BadInput("expired", "the request's MQTT message expiry passed before it could run"))
            return false
        }
        return true
    }

    /// After a reload: the engine's cached prompt prefixes go, on this (the inference) thread.
    private func dropStalePrefixCache() {
        if prefixCacheStale.exchange(false, ordering: .acquiringAndReleasing) {
            backend.invalidatePrefixCache()
        }
    }

    /// Decide jobs of one route, decided together (`queue.batch_max`).
    func runBatch(_ jobs: [Job]) {
        let live = jobs.filter(stillWanted)
        guard let route = live.first?.route else { return }
        dropStalePrefixCache()
        let results = backend.decide(batch: live.map { Engine.DecideRequest(prompt: $0.prompt, labels: route.labels) },
                                     cacheKey: route.name)
        logger.debug("route \(route.name): \(live.count) queued decisions decided together")
        for (job, r) in zip(live, results) {
            switch r {
            case .success(let d): finishDecide(job, d)
            case .failure(let e): fail(job, BadInput("inference_failed", "\(e)"))
            }
        }
    }

    private func finishDecide(_ job: Job, _ r: DecideResult) {
        let route = job.route
        guard r.probabilities.allSatisfy({ $0.isFinite }) else {
            fail(job, BadInput("inference_failed", "the model produced non-finite probabilities \(r.probabilities); the model file is probably corrupt"))
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
            latencyMs: latency, model: backend.modelName, ts: isoTimestamp(), correlation: job.correlationData)
        publishDecision(job, doc)
        stats.decided(latencyMs: latency, tokens: r.promptTokens - r.cachedTokens, engineMs: r.elapsedMs / Double(r.batchSize))
    }

    func run(_ job: Job) {
        guard stillWanted(job) else { return }
        dropStalePrefixCache()
        let route = job.route
        do {
            switch route.task {
            case .decide:
                finishDecide(job, try backend.decide(prompt: job.prompt, labels: route.labels, cacheKey: route.name))
            case .generate:
                var options = GenerateOptions()
                options.maxTokens = route.maxTokens
                options.temperature = route.temperature
                options.stop = route.stop
                let r = try backend.generate(prompt: job.prompt, options: options) { [self] _ in !pastDrainDeadline() }
                if r.stopReason == .cancelled {
                    fail(job, BadInput("shutting_down", "generation cancelled: the daemon is stopping"))
                    return
                }
                let latency = Double(monotonicNanoseconds() - job.receivedAt) / 1e6
                if !debounced(job, value: r.text) { return }
                let doc = Payloads.decision(
                    route: route.name, inputTopic: job.inputTopic, label: nil, probabilities: [], text: r.text,
                    promptTokens: r.promptTokens, cachedTokens: r.cachedTokens, generatedTokens: r.generatedTokens,
                    latencyMs: latency, model: backend.modelName, ts: isoTimestamp(), correlation: job.correlationData)
                publishDecision(job, doc)
                stats.decided(latencyMs: latency, tokens: r.promptTokens - r.cachedTokens + r.generatedTokens,
                              engineMs: r.promptMs + r.generateMs)
            }
        } catch {
            fail(job, BadInput("inference_failed", "\(error)"))
        }
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

    // MARK: Publishing

    private func publishDecision(_ job: Job, _ doc: JSON) {
        let t = transport
        var props = MQTTPublishProperties(contentType: "application/json")
        props.correlationData = job.correlationData
        let qos = job.route.outputQoS
        let retain = job.isResponse ? false : job.route.retain
        do {
            try t.publish(topic: job.replyTopic, payload: Array(doc.serialized.utf8), qos: qos, retain: retain, properties: props)
        } catch {
            logger.error("route \(job.route.name): cannot publish the decision to \(job.replyTopic): \(error)")
        }
    }

    private func fail(_ job: Job, _ bad: BadInput) {
        publishError(route: job.route, inputTopic: job.inputTopic, bad,
                     responseTopic: job.isResponse ? job.replyTopic : nil, correlation: job.correlationData)
    }

    /// Error document to the route's error topic (and to the response topic of a request), plus
    /// one log line. Never throws: a bad message must not stop the daemon.
    func publishError(route: RouteConfig?, inputTopic: String, _ bad: BadInput, responseTopic: String?, correlation: [UInt8]?) {
        stats.error()
        let (t, defaultTopic) = state.withLock { ($0.transport, $0.config.mqtt.errorTopic) }
        logger.warning("route \(route?.name ?? "-"): \(bad.code) on \(inputTopic): \(bad.detail)")
        let doc = Payloads.error(route: route?.name, inputTopic: inputTopic, error: bad.code, detail: bad.detail, ts: isoTimestamp())
        let payload = Array(doc.serialized.utf8)
        var props = MQTTPublishProperties(contentType: "application/json")
        props.correlationData = correlation
        do {
            try t.publish(topic: route?.errorTopic ?? defaultTopic, payload: payload, qos: 1, retain: false, properties: props)
            if let r = responseTopic {
                try t.publish(topic: r, payload: payload, qos: 1, retain: false, properties: props)
            }
        } catch {
            logger.error("cannot publish an error message: \(error)")
        }
    }

    public func publishStats() {
        let (t, topic) = state.withLock { ($0.transport, $0.config.mqtt.statsTopic) }
        let doc = Payloads.stats(stats.snapshot(queue: queue.count))
        try? t.publish(topic: topic, payload: Array(doc.serialized.utf8), qos: 0, retain: true, properties: MQTTPublishProperties())
    }

    // MARK: Shutdown

    /// Starts the drain: queued jobs — and messages still arriving until the DISCONNECT — are
    /// computed until `drainTimeoutS` passes; after that they are answered `shutting_down`. The
    /// subscriptions stay on the broker, so with a persistent session messages published while
    /// the daemon is down wait there for the next start.
    public func beginShutdown(drainTimeoutS: Double) {
        drainDeadline.store(monotonicNanoseconds() + UInt64(drainTimeoutS * 1e9), ordering: .relaxed)
        queue.finishWhenEmpty()
        logger.info("draining: \(queue.count) queued jobs, computed for at most \(drainTimeoutS) s (queue.drain_timeout_s)")
    }

    /// Waits for the inference thread to empty the queue, then refuses new messages (they are
    /// answered `shutting_down`) and answers any job that slipped in meanwhile.
    public func finishShutdown() {
        if let w = worker {
            pthread_join(w, nil)
            worker = nil
        }
        state.withLock { $0.accepting = false }
        queue.close()
        for job in queue.removeAll() {
            fail(job, BadInput("shutting_down", "the daemon is stopping"))
        }
    }
}
