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
public final class Publisher: Sendable {
    private struct State {
        var transport: MQTTTransport
        var config: BitnetdConfig
        /// Home Assistant discovery topics published (retained) under the current configuration.
        var discoveryTopics: [String] = []
    }

    private let state: Mutex<State>
    private let stats: Stats
    private let modelName: String
    private let logger = Logger(label: "bitnetd")

    public init(config: BitnetdConfig, transport: MQTTTransport, stats: Stats, modelName: String) {
        state = Mutex(State(transport: transport, config: config))
        self.stats = stats
        self.modelName = modelName
    }

    public var transport: MQTTTransport { state.withLock { $0.transport } }

    public func replaceTransport(_ t: MQTTTransport) { state.withLock { $0.transport = t } }

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
        let (t, topic) = state.withLock { ($0.transport, $0.config.mqtt.statsTopic) }
        let doc = Payloads.stats(stats.snapshot(queue: queue))
        try? t.publish(topic: topic, payload: Array(doc.serialized.utf8), qos: 0, retain: true, properties: MQTTPublishProperties())
    }

    // MARK: Answers

    /// A decision document to the job's reply topic (its route's QoS; retained only when the
    /// route says so and it is not an MQTT 5 response).
    func publishDecision(_ job: Job, _ doc: JSON) {
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

    /// The error document of a job that was accepted but cannot be answered with a decision.
    func fail(_ job: Job, _ bad: BadInput) {
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

    // MARK: Plugins

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
}
