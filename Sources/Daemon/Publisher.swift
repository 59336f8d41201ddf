import DaemonConfig
import JSONValue
import Mosquitto
import Platform
import SensorPlugins
import Synchronization

/// Everything the daemon sends to the broker: decisions, error documents, plugin readings, stats,
/// the retained status and Home Assistant discovery. Owns the transport; a SIGHUP that changes
/// the MQTT settings swaps in a new client with `replaceTransport`.
///
/// Thread-safe: called from the MQTT thread (errors of bad messages, status on connect), the
/// inference thread (decisions), plugin queues (readings, plugin errors) and the stats service.
///
/// Answers (decisions and error documents) are never handed to a client that cannot take them:
/// while it is disconnected, or while `mqtt.outbox.max_messages` of its publishes are not
/// acknowledged yet, they wait in the outbox (bounded; the oldest goes first, counted) and are
/// published in order once it can (`flushOutbox`, on every connect and by the outbox service).
/// Error documents on the error topics are rate-limited per (route or plugin, error code): at
/// most one per minute, the next one carrying `"suppressed": N`.
public final class Publisher: Sendable {
    private struct State {
        var transport: MQTTTransport
        var config: BitnetdConfig
        /// Home Assistant discovery topics published (retained) under the current configuration.
        var discoveryTopics: [String] = []
        var outbox: [(message: MQTTOutgoing, at: Double)] = []
        var outboxHead = 0
        var outboxCount: Int { outbox.count - outboxHead }
    }

    private let state: Mutex<State>
    private let stats: Stats
    private let modelName: String
    /// Names of the `routes[].model` engines, by path (for the stats document).
    private let routeModelNames: [String: String]
    /// The kernel path in use and those whose start-up self-test failed (stats document).
    private let kernel: (path: String, skipped: [String])
    private let logger = Logger(label: "bitnetd")
    private let throttle = ErrorThrottle()

    public init(config: BitnetdConfig, transport: MQTTTransport, stats: Stats, modelName: String,
                routeModelNames: [String: String] = [:], kernel: (path: String, skipped: [String]) = ("", [])) {
        state = Mutex(State(transport: transport, config: config))
        self.stats = stats
        self.modelName = modelName
        self.routeModelNames = routeModelNames
        self.kernel = kernel
    }

    public var transport: MQTTTransport { state.withLock { $0.transport } }

    /// A new client (SIGHUP changed the MQTT settings): answers go to it (or to the outbox until
    /// it is connected) from now on. `carried` — what the old client had not had acknowledged —
    /// goes to the front of the outbox.
    public func replaceTransport(_ t: MQTTTransport, carrying carried: [MQTTOutgoing] = []) {
        let now = monotonicSeconds()
        state.withLock { s in
            s.transport = t
            guard !carried.isEmpty else { return }
            s.outbox = carried.map { ($0, now) } + s.outbox[s.outboxHead...]
            s.outboxHead = 0
        }
        trimOutbox()
    }

    /// Answers waiting for the broker.
    public var outboxCount: Int { state.withLock { $0.outboxCount } }

    // MARK: Outbox

    /// Publishes an answer now if the client can take it, else queues it behind the ones waiting.
    func send(_ m: MQTTOutgoing) {
        let direct = state.withLock { s -> MQTTTransport? in
            if s.outboxCount == 0 && canTake(s) { return s.transport }
            s.outbox.append((m, monotonicSeconds()))
            logger.debug("outbox: the answer to \(m.topic) waits for the broker (\(s.outboxCount) waiting)")
            return nil
        }
        guard let t = direct else {
            trimOutbox()
            return
        }
        do {
            try t.publish(topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties)
        } catch {
            logger.error("cannot publish to \(m.topic): \(error)")
        }
    }

    private func canTake(_ s: State) -> Bool {
        s.transport.isConnected && s.transport.pendingPublishes < s.config.mqtt.outboxMaxMessages
    }

    /// Drops the oldest answers beyond `max_messages`.
    private func trimOutbox() {
        let dropped = state.withLock { s -> Int in
            let over = s.outboxCount - s.config.mqtt.outboxMaxMessages
            guard over > 0 else { return 0 }
            s.outboxHead += over
            compactOutbox(&s)
            return over
        }
        if dropped > 0 {
            stats.outboxDropped(dropped)
            logger.warning("outbox full (mqtt.outbox.max_messages): dropped the \(dropped) oldest answer(s)")
        }
    }

    private func compactOutbox(_ s: inout State) {
        if s.outboxHead > 64 && s.outboxHead * 2 > s.outbox.count {
            s.outbox.removeFirst(s.outboxHead)
            s.outboxHead = 0
        }
    }

    /// Publishes waiting answers, oldest first, while the client can take them; drops those older
    /// than `max_age_s`.
    public func flushOutbox() {
        var expired = 0
        while true {
            let next = state.withLock { s -> (MQTTTransport, MQTTOutgoing)? in
                let now = monotonicSeconds()
                while s.outboxCount > 0, now - s.outbox[s.outboxHead].at > s.config.mqtt.outboxMaxAgeS {
                    s.outboxHead += 1
                    expired += 1
                }
                guard s.outboxCount > 0, canTake(s) else {
                    compactOutbox(&s)
                    return nil
                }
                let m = s.outbox[s.outboxHead].message
                s.outboxHead += 1
                compactOutbox(&s)
                return (s.transport, m)
            }
            guard let (t, m) = next else { break }
            do {
                try t.publish(topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties)
            } catch {
                logger.error("cannot publish to \(m.topic): \(error)")
            }
        }
        if expired > 0 {
            stats.outboxDropped(expired)
            logger.warning("outbox: dropped \(expired) answer(s) older than mqtt.outbox.max_age_s")
        }
    }

    /// A reloaded configuration: topics and discovery follow it.
    public func apply(_ config: BitnetdConfig) {
        let connected = state.withLock { s -> Bool in
            s.config = config
            return s.transport.isConnected
        }
        if connected { publishDiscovery() }
    }

    // MARK: Status

    /// Announces `online` (retained) after every connect; the will says `offline`.
    public func connected() {
        let (t, topic) = state.withLock { ($0.transport, $0.config.mqtt.statusTopic) }
        try? t.publish(topic: topic, payload: Array("online".utf8), qos: 1, retain: true, properties: MQTTPublishProperties())
        publishDiscovery()
        flushOutbox()
    }

    /// The retained `offline` of a clean stop (the will covers the rest).
    public func publishOffline() {
        let (t, topic) = state.withLock { ($0.transport, $0.config.mqtt.statusTopic) }
        try? t.publish(topic: topic, payload: Array("offline".utf8), qos: 1, retain: true, properties: MQTTPublishProperties())
    }

    /// Home Assistant discovery: a retained config message per decide route (`homeassistant:`),
    /// and an empty retained message for each one published before that is no longer configured.
    public func publishDiscovery() {
        let (t, config, old) = state.withLock { ($0.transport, $0.config, $0.discoveryTopics) }
        let plan = HomeAssistantDiscovery.messages(config: config, model: modelName)
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

    public func publishStats(queue: Int) {
        let (t, config) = state.withLock { ($0.transport, $0.config) }
        let topic = config.mqtt.statsTopic
        let doc = Payloads.stats(stats.snapshot(queue: queue, outbox: outboxCount), models: modelsInUse(config), kernel: kernel)
        try? t.publish(topic: topic, payload: Array(doc.serialized.utf8), qos: 0, retain: true, properties: MQTTPublishProperties())
    }

    /// Which model serves which routes: the main model first, then each `routes[].model` file.
    func modelsInUse(_ config: BitnetdConfig) -> [(name: String, path: String, routes: [String])] {
        var out = [(name: modelName, path: config.model.path,
                    routes: config.routes.filter { $0.model == nil || $0.model == config.model.path }.map(\.name))]
        for path in config.routeModels where path != config.model.path {
            out.append((routeModelNames[path] ?? path, path, config.routes.filter { $0.model == path }.map(\.name)))
        }
        return out
    }

    // MARK: Answers

    /// A decision document to the job's reply topic (its route's QoS; retained only when the
    /// route says so and it is not an MQTT 5 response).
    func publishDecision(_ job: Job, _ doc: JSON) {
        var props = MQTTPublishProperties(contentType: "application/json")
        props.correlationData = job.correlationData
        send(MQTTOutgoing(topic: job.replyTopic, payload: Array(doc.serialized.utf8), qos: job.route.outputQoS,
                          retain: job.isResponse ? false : job.route.retain, properties: props))
    }

    /// The error document of a job that was accepted but cannot be answered with a decision.
    func fail(_ job: Job, _ bad: BadInput) {
        publishError(route: job.route, inputTopic: job.inputTopic, bad,
                     responseTopic: job.isResponse ? job.replyTopic : nil, correlation: job.correlationData)
    }

    /// Error document to the route's error topic (and to the response topic of a request), plus
    /// one log line. Never throws: a bad message must not stop the daemon.
    ///
    /// The answer on a response topic always goes out; the copy on the error topic, and the log
    /// line, at most once a minute per (route, code).
    func publishError(route: RouteConfig?, inputTopic: String, _ bad: BadInput, responseTopic: String?, correlation: [UInt8]?) {
        stats.error()
        let defaultTopic = state.withLock { $0.config.mqtt.errorTopic }
        var props = MQTTPublishProperties(contentType: "application/json")
        props.correlationData = correlation
        let ts = isoTimestamp()
        let (go, suppressed) = throttle.admit("route\u{0}\(route?.name ?? "")\u{0}\(bad.code)", now: monotonicSeconds())
        if go {
            let more = suppressed > 0 ? " (\(suppressed) more since the last report)" : ""
            logger.warning("route \(route?.name ?? "-"): \(bad.code) on \(inputTopic): \(bad.detail)\(more)")
            let doc = Payloads.error(route: route?.name, inputTopic: inputTopic, error: bad.code, detail: bad.detail, ts: ts,
                                     suppressed: suppressed)
            send(MQTTOutgoing(topic: route?.errorTopic ?? defaultTopic, payload: Array(doc.serialized.utf8), qos: 1,
                              retain: false, properties: props))
        } else {
            stats.suppressedError()
        }
        if let r = responseTopic {
            let doc = Payloads.error(route: route?.name, inputTopic: inputTopic, error: bad.code, detail: bad.detail, ts: ts)
            send(MQTTOutgoing(topic: r, payload: Array(doc.serialized.utf8), qos: 1, retain: false, properties: props))
        }
    }

    // MARK: Plugins

    /// Publishes a plugin reading on `topic` (plugins with `publish: true`), payload
    /// `{"ts": …, fields…}` (DESIGN.md §6).
    public func publish(reading: Reading, topic: String) {
        // Readings are not answers: when the client cannot take them they are dropped, never queued.
        guard let t = state.withLock({ canTake($0) ? $0.transport : nil }) else { return }
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
    ///
    /// At most one document (and log line) per (plugin, error code) a minute; the next one carries
    /// `"suppressed": N`.
    public func publishPluginError(_ settings: PluginSettings, _ error: PluginError) {
        stats.error()
        let (go, suppressed) = throttle.admit("plugin\u{0}\(settings.name)\u{0}\(error.code)", now: monotonicSeconds())
        guard go else {
            stats.suppressedError()
            return
        }
        let (topic, prefix) = state.withLock { ($0.config.mqtt.errorTopic, $0.config.mqtt.topicPrefix) }
        let more = suppressed > 0 ? " (\(suppressed) more since the last report)" : ""
        logger.warning("plugin \(settings.name) (\(settings.id)): \(error.code): \(error.message)\(more)")
        let doc = Payloads.error(route: nil, inputTopic: settings.baseTopic(prefix: prefix), error: error.code,
                                 detail: "plugin \(settings.name): \(error.message)", ts: isoTimestamp(), suppressed: suppressed)
        send(MQTTOutgoing(topic: topic, payload: Array(doc.serialized.utf8), qos: 1, retain: false,
                          properties: MQTTPublishProperties(contentType: "application/json")))
    }
}
