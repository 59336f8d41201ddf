@testable import Daemon
import DaemonConfig
import Glibc
import Mosquitto
import Platform
import SensorPlugins
import Synchronization
import Testing
import TestKit

/// A transport whose connection and unacknowledged-publish count the test sets.
final class SwitchableTransport: MQTTTransport {
    let inner = RecordingTransport()
    let up = Atomic<Bool>(false)
    let pending = Atomic<Int>(0)
    var version: MQTTVersion { .v5 }
    var isConnected: Bool { up.load(ordering: .relaxed) }
    var pendingPublishes: Int { pending.load(ordering: .relaxed) }
    func publish(topic: String, payload: [UInt8], qos: Int, retain: Bool, properties: MQTTPublishProperties) throws(MQTTError) {
        try inner.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
    }
    func setSubscriptions(_ subscriptions: [MQTTSubscription]) {}
}

@Suite struct FairQueueTests {
    func job(_ id: UInt64, _ route: RouteConfig, reading: Bool = false) -> Job {
        Job(id: id, route: route, prompt: "p\(id)", inputTopic: "t", replyTopic: "r", isResponse: false,
            correlationData: nil, receivedAt: 0, expiresAt: nil, fromReading: reading)
    }

    @Test func aFloodingRouteLosesItsOwnJobsNotAnotherRoutes() throws {
        let config = try testConfig()
        let d = config.routes.first { $0.name == "d" }!
        var flood = d
        flood.name = "flood"
        let q = JobQueue(capacity: 4, policy: .reject)
        for i in 0..<4 { if case .queued = q.push(job(UInt64(i), flood)) {} else { Issue.record("push \(i)") } }
        // Full: the flooding route's own next job is refused (policy reject)…
        guard case .rejected = q.push(job(4, flood)) else { Issue.record("not rejected"); return }
        // …but another route gets in, and the flood pays with its oldest job.
        guard case .evicted(let old) = q.push(job(5, d)) else { Issue.record("not evicted"); return }
        #expect(old.id == 0 && old.route.name == "flood")
        #expect(q.count(route: "d") == 1 && q.count(route: "flood") == 3)
        // Round-robin: the quiet route is served right after one turn of the busy one.
        #expect(q.popBatch(max: 1)?.map(\.id) == [1])
        #expect(q.popBatch(max: 1)?.map(\.id) == [5])
    }

    @Test func readingsKeepTheNewest() throws {
        let config = try testConfig()
        let d = config.routes.first { $0.name == "d" }!
        let q = JobQueue(capacity: 3, policy: .reject)
        for i in 0..<3 { _ = q.push(job(UInt64(i), d, reading: true)) }
        guard case .evicted(let old) = q.push(job(3, d, reading: true)) else { Issue.record("not evicted"); return }
        #expect(old.id == 0)
        #expect(q.popBatch(max: 8)?.map(\.id) == [1, 2, 3])
    }

    @Test func aReadingFloodIsCountedNotAnsweredOneByOne() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try testConfig("queue: {size: 4}", routes: """
        routes:
          - name: p
            topic: sensors/+/t
            input: plugin
            prompt: "T={{t}}:"
            labels: [ok, hot]
        """), backend: FakeBackend(), transport: t)
        // No worker: readings pile up in their lane.
        for i in 0..<100 { core.handle(reading: Reading(topicSuffix: "", fields: ["t": .number(Double(i))], timestamp: 0), topic: "sensors/x/t") }
        #expect(core.stats.snapshot(queue: 0).droppedReadings == 96)
        #expect(core.queue.count == 4)
        // One error document for the 96, the rest counted.
        #expect(t.all.filter { $0.json["error"] == "dropped" }.count == 1)
        #expect(core.stats.snapshot(queue: 0).suppressedErrors == 95)
    }
}

@Suite struct ErrorThrottleTests {
    @Test func oneDocumentPerKeyAndMinuteThenTheCount() {
        let th = ErrorThrottle(interval: 60)
        #expect(th.admit("plugin\u{0}a\u{0}bad_line", now: 0) == (true, 0))
        for s in 1...9 { #expect(th.admit("plugin\u{0}a\u{0}bad_line", now: Double(s)) == (false, 0)) }
        #expect(th.admit("plugin\u{0}a\u{0}exited", now: 10) == (true, 0), "another code is another key")
        #expect(th.admit("plugin\u{0}b\u{0}bad_line", now: 10) == (true, 0), "another plugin is another key")
        #expect(th.admit("plugin\u{0}a\u{0}bad_line", now: 60.5) == (true, 9))
        #expect(th.admit("plugin\u{0}a\u{0}bad_line", now: 61) == (false, 0))
    }

    @Test func messagesThatDifferOnlyInTheLineNumberAreOneKey() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try testConfig(), backend: FakeBackend(), transport: t)
        let settings = PluginSettings(id: "exec", name: "noisy")
        for i in 0..<3_367 { core.publisher.publishPluginError(settings, PluginError("bad_line", "stdout line \(i): not JSON")) }
        #expect(t.all.count == 1)
        #expect(t.all[0].json["error"] == "bad_line")
        #expect(core.stats.snapshot(queue: 0).suppressedErrors == 3_366)
    }
}

@Suite struct TopicGuardTests {
    static func config(_ extra: String = "") throws -> BitnetdConfig {
        try testConfig(routes: """
        routes:
          - name: d
            topic: sensors/+/t
            prompt: "T={{t}}:"
            labels: [ok, hot]
            output: {topic: "home/{{topic.1}}/decision"}
          - name: free
            topic: free/+
            prompt: "{{t}}:"
            labels: [a, b]
            output: {topic: "{{topic.1}}/out"}
          - name: strict
            topic: strict/in
            prompt: "{{t}}:"
            labels: [a, b]
            response_topics: ["app/replies/#"]
        \(extra)
        """)
    }

    @Test func responseTopicsAreCheckedAgainstReservedTopicsOrTheAllowList() throws {
        let c = try Self.config()
        let g = TopicGuard(config: c)
        let d = c.routes[0], strict = c.routes[2]
        #expect(g.responseTopicProblem("replies/app-1", route: d) == nil)
        for reserved in ["bitnetd/status", "bitnetd/decision/x", "homeassistant/sensor/x/config", "home/kitchen/decision", "x/out"] {
            #expect(g.responseTopicProblem(reserved, route: d)?.code == "response_topic_refused", "\(reserved)")
        }
        for malformed in ["#", "a/+/#", "", "$SYS/broker", "/x", "a/\u{0}"] {
            #expect(g.responseTopicProblem(malformed, route: d)?.code == "invalid_response_topic", "\(malformed.debugDescription)")
        }
        #expect(g.responseTopicProblem("app/replies/7", route: strict) == nil)
        #expect(g.responseTopicProblem("replies/app-1", route: strict)?.code == "response_topic_refused")
    }

    @Test func outputTemplatesThatStartWithALevelAreCheckedPerMessage() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try Self.config(), backend: FakeBackend(), transport: t)
        core.startWorker()
        for (level, code) in [("bitnetd", "output_topic_refused"), ("homeassistant", "output_topic_refused"), ("$SYS", nil), ("ok", nil)] {
            core.handle(message("free/\(level)", #"{"t":1}"#))
            _ = code
        }
        let sent = t.wait(for: 3)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
        #expect(sent.contains { $0.topic == "ok/out" })
        #expect(!sent.contains { $0.topic.hasPrefix("bitnetd/out") || $0.topic.hasPrefix("homeassistant/") })
        #expect(t.all.filter { $0.json["error"] == "output_topic_refused" }.count == 1, "rate-limited per route and code")
        // `$SYS` cannot even be a level here: the broker never delivers `$` topics to a wildcard.
    }

    @Test func aRefusedResponseTopicGetsAnErrorOnTheErrorTopicNotThere() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try Self.config(), backend: FakeBackend(), transport: t)
        core.startWorker()
        core.handle(message("sensors/a/t", #"{"t":1}"#, response: "bitnetd/status"))
        core.handle(message("sensors/a/t", #"{"t":1}"#, response: "a/+/#"))
        let sent = t.wait(for: 2)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
        #expect(sent.map(\.topic) == ["bitnetd/error", "bitnetd/error"])
        #expect(sent.map { $0.json["error"] } == ["response_topic_refused", "invalid_response_topic"])
    }
}

@Suite struct OutboxTests {
    @Test func answersWaitWhileDisconnectedAndGoOutInOrder() throws {
        let t = SwitchableTransport()
        let core = DaemonCore(config: try testConfig("mqtt: {outbox: {max_messages: 3}}"), backend: FakeBackend(), transport: t)
        core.startWorker()
        for i in 0..<5 { core.handle(message("sensors/s\(i)/t", #"{"t":\#(i)}"#)) }
        #expect(poll(timeoutS: 5) { core.publisher.outboxCount == 3 && core.queue.count == 0 })
        #expect(t.inner.all.isEmpty, "nothing is handed to a disconnected client")
        #expect(core.stats.snapshot(queue: 0).outboxDropped == 2)
        t.up.store(true, ordering: .relaxed)
        core.publisher.connected()
        let sent = t.inner.all.filter { $0.topic.hasPrefix("bitnetd/decision") }
        #expect(sent.map { $0.json["input_topic"] } == ["sensors/s2/t", "sensors/s3/t", "sensors/s4/t"], "oldest dropped, order kept")
        #expect(core.publisher.outboxCount == 0)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func aBusyClientIsNotHandedMoreThanTheLimit() throws {
        let t = SwitchableTransport()
        t.up.store(true, ordering: .relaxed)
        t.pending.store(10, ordering: .relaxed)
        let core = DaemonCore(config: try testConfig("mqtt: {outbox: {max_messages: 10}}"), backend: FakeBackend(), transport: t)
        core.startWorker()
        core.handle(message("sensors/a/t", #"{"t":1}"#))
        #expect(poll(timeoutS: 5) { core.publisher.outboxCount == 1 })
        #expect(t.inner.all.isEmpty)
        t.pending.store(0, ordering: .relaxed)
        core.publisher.flushOutbox()
        #expect(t.inner.all.count == 1)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func aReplacedClientsUnacknowledgedMessagesGoFirst() throws {
        let t = SwitchableTransport()
        let core = DaemonCore(config: try testConfig(), backend: FakeBackend(), transport: t)
        core.publisher.send(MQTTOutgoing(topic: "new/1", payload: [], qos: 1, retain: false, properties: MQTTPublishProperties()))
        let fresh = SwitchableTransport()
        core.publisher.replaceTransport(fresh, carrying: [
            MQTTOutgoing(topic: "old/1", payload: [], qos: 1, retain: false, properties: MQTTPublishProperties()),
            MQTTOutgoing(topic: "old/2", payload: [], qos: 1, retain: false, properties: MQTTPublishProperties()),
        ])
        fresh.up.store(true, ordering: .relaxed)
        core.publisher.flushOutbox()
        #expect(fresh.inner.all.map(\.topic) == ["old/1", "old/2", "new/1"])
    }
}

@Suite struct MemoryBudgetTests {
    @Test func limitsThatCouldOutgrowTheBudgetAreAConfigError() throws {
        let fits = try testConfig()
        guard case .success = PluginSetup.build(fits) else { Issue.record("the defaults must fit"); return }
        let budget = MemoryBudget(config: fits, plugins: [])
        #expect(budget.total <= 64 << 20 && budget.prefixCache > 0)
        let big = try testConfig("""
        queue: {size: 4096}
        limits: {max_payload_bytes: 1048576, memory_budget_mb: 64}
        """)
        guard case .failure(let e) = PluginSetup.build(big) else { Issue.record("4 GiB of queue accepted"); return }
        #expect(e.errors.count == 1)
        #expect(e.errors[0].description.contains("c.yaml:3:56: "), "points at memory_budget_mb: \(e.errors[0])")
        #expect(e.errors[0].description.contains("limits.memory_budget_mb: the configured limits need up to"))
    }
}
