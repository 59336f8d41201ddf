import DaemonConfig
import JSONValue
import Mosquitto
import Platform
import SensorPlugins
import Synchronization

/// The front of the message path: an MQTT message or a plugin reading → the routes it matches →
/// a rendered prompt → a job in the bounded queue. Owns the router and the reading windows of
/// `input: plugin` routes. What cannot become a job (bad input, a full queue, a stopping daemon)
/// is answered through the publisher at once.
///
/// Thread-safe: `handle(_:)` runs on the MQTT network thread, `handle(reading:topic:)` on plugin
/// queues, `apply` on the main thread (SIGHUP).
public final class Intake: Sendable {
    private struct State {
        var router: Router
        var guard_: TopicGuard
        var config: BitnetdConfig
        var accepting = true
        /// Reading windows of `input: plugin` routes, per route and reading topic.
        var windows: [String: ReadingWindow] = [:]
        /// When each window was last appended to (a counter), to replace the stalest one when a
        /// route's topics exceed `ReadingWindow.maxWindowsPerRoute`.
        var windowUse: [String: UInt64] = [:]
        var windowClock: UInt64 = 0
    }

    private let state: Mutex<State>
    private let queue: JobQueue
    private let publisher: Publisher
    private let stats: Stats
    private let logger = Logger(label: "bitnetd")
    private let nextID = Atomic<UInt64>(1)

    public init(config: BitnetdConfig, queue: JobQueue, publisher: Publisher, stats: Stats) {
        state = Mutex(State(router: Router(routes: config.routes, maxPayloadBytes: config.limits.maxPayloadBytes),
                            guard_: TopicGuard(config: config), config: config))
        self.queue = queue
        self.publisher = publisher
        self.stats = stats
    }

    public var config: BitnetdConfig { state.withLock { $0.config } }
    public var subscriptions: [MQTTSubscription] { state.withLock { $0.router.subscriptions } }

    /// A reloaded configuration: routes, limits, queue size and policy; windows start afresh.
    public func apply(_ config: BitnetdConfig) {
        state.withLock { s in
            s.router = Router(routes: config.routes, maxPayloadBytes: config.limits.maxPayloadBytes)
            s.guard_ = TopicGuard(config: config)
            s.config = config
            s.windows = [:]
            s.windowUse = [:]
        }
        queue.reconfigure(capacity: config.queue.size, policy: config.queue.overflow)
    }

    /// Reading windows held per route (tests: bounded by `ReadingWindow.maxWindowsPerRoute`).
    var windowCounts: [String: Int] {
        state.withLock { s in
            var out: [String: Int] = [:]
            for key in s.windows.keys { out[String(key.prefix { $0 != "\u{0}" }), default: 0] += 1 }
            return out
        }
    }

    /// From now on every input is answered `shutting_down` (after the drain).
    public func stopAccepting() { state.withLock { $0.accepting = false } }

    // MARK: Inputs

    public func handle(_ message: MQTTMessage) {
        stats.received()
        let (router, topics, accepting) = state.withLock { ($0.router, $0.guard_, $0.accepting) }
        let routes = router.matchingRoutes(topic: message.topic)
        if routes.isEmpty {
            logger.debug("no route for topic \(message.topic)")
            return
        }
        for route in routes {
            // A response topic the daemon will not write to gets no answer there: the refusal
            // goes to the error topic only.
            if let r = message.responseTopic, let refused = topics.responseTopicProblem(r, route: route) {
                publisher.publishError(route: route, inputTopic: message.topic, refused, responseTopic: nil,
                                       correlation: message.correlationData)
                continue
            }
            guard accepting else {
                publisher.publishError(route: route, inputTopic: message.topic, BadInput("shutting_down", "the daemon is stopping"),
                                       responseTopic: message.responseTopic, correlation: message.correlationData)
                continue
            }
            switch router.prepare(route: route, message: message) {
            case .failure(let bad):
                publisher.publishError(route: route, inputTopic: message.topic, bad, responseTopic: message.responseTopic,
                                       correlation: message.correlationData)
            case .success(let (prompt, output)):
                if message.responseTopic == nil, !route.outputTopic.readsValue, let refused = topics.outputTopicProblem(output, route: route) {
                    publisher.publishError(route: route, inputTopic: message.topic, refused, responseTopic: nil,
                                           correlation: message.correlationData)
                    continue
                }
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
        let (router, topics, accepting) = state.withLock { ($0.router, $0.guard_, $0.accepting) }
        let routes = router.readingRoutes(topic: topic)
        guard !routes.isEmpty, accepting else { return }
        let payload = Array(JSON.object(reading.fields).serialized.utf8)
        let message = MQTTMessage(topic: topic, payload: payload)
        for route in routes {
            var window: ReadingWindow?
            if let w = route.window {
                let key = route.name + "\u{0}" + topic
                window = state.withLock { s -> ReadingWindow in
                    if s.windows[key] == nil {
                        // A new topic for this route: at most maxWindowsPerRoute windows each.
                        let mine = s.windowUse.filter { $0.key.hasPrefix(route.name + "\u{0}") }
                        if mine.count >= ReadingWindow.maxWindowsPerRoute, let stalest = mine.min(by: { $0.value < $1.value }) {
                            s.windows[stalest.key] = nil
                            s.windowUse[stalest.key] = nil
                        }
                    }
                    var win = s.windows[key] ?? ReadingWindow(maxCount: w.count, span: w.spanS)
                    win.append(reading, now: wallClock())
                    s.windows[key] = win
                    s.windowClock += 1
                    s.windowUse[key] = s.windowClock
                    return win
                }
            }
            switch router.prepare(route: route, message: message, window: window) {
            case .failure(let bad):
                publisher.publishError(route: route, inputTopic: topic, bad, responseTopic: nil, correlation: nil)
            case .success(let (prompt, output)):
                if !route.outputTopic.readsValue, let refused = topics.outputTopicProblem(output, route: route) {
                    publisher.publishError(route: route, inputTopic: topic, refused, responseTopic: nil, correlation: nil)
                    continue
                }
                let job = Job(id: nextID.add(1, ordering: .relaxed).oldValue, route: route, prompt: prompt,
                              inputTopic: topic, replyTopic: output, isResponse: false, correlationData: nil,
                              receivedAt: monotonicNanoseconds(), expiresAt: nil, fromReading: true)
                enqueue(job)
            }
        }
    }

    func enqueue(_ job: Job) {
        switch queue.push(job) {
        case .queued:
            break
        case .rejected(let j):
            stats.dropped()
            let (accepting, size) = state.withLock { ($0.accepting, $0.config.queue.size) }
            let bad = accepting
                ? BadInput("queue_full", "the job queue is full (\(size) jobs; queue.overflow: reject)")
                : BadInput("shutting_down", "the daemon is stopping")
            publisher.fail(j, bad)
        case .evicted(let old):
            if old.fromReading { stats.droppedReading() } else { stats.dropped() }
            let why = old.route.name == job.route.name
                ? (old.fromReading ? "an older reading dropped for a newer one (its route's share of the queue is full)"
                                   : "dropped from a full queue to make room for a newer message (queue.overflow: drop_oldest)")
                : "dropped to make room for route \(job.route.name): route \(old.route.name) had the most queued jobs"
            publisher.fail(old, BadInput("dropped", why))
        }
    }
}
