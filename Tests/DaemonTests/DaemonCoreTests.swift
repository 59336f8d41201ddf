import BitNet
@testable import Daemon
import DaemonConfig
import Foundation
import Glibc
import JSONValue
import Mosquitto
import Platform
import SensorPlugins
import Synchronization
import Testing
import TestKit

/// In-memory transport: records what would be published.
final class RecordingTransport: MQTTTransport {
    struct Sent: Sendable {
        var topic: String
        var payload: String
        var qos: Int
        var retain: Bool
        var correlation: [UInt8]?
        var json: JSON { (try? JSON.parse(payload)) ?? .null }
    }

    let sent = Mutex<[Sent]>([])
    let subs = Mutex<[MQTTSubscription]>([])
    var version: MQTTVersion { .v5 }
    var isConnected: Bool { true }

    func publish(topic: String, payload: [UInt8], qos: Int, retain: Bool, properties: MQTTPublishProperties) throws(MQTTError) {
        let s = Sent(topic: topic, payload: String(decoding: payload, as: UTF8.self), qos: qos, retain: retain,
                     correlation: properties.correlationData)
        sent.withLock { $0.append(s) }
    }

    func setSubscriptions(_ subscriptions: [MQTTSubscription]) { subs.withLock { $0 = subscriptions } }

    var all: [Sent] { sent.withLock { $0 } }

    func wait(for n: Int, timeoutS: Double = 5) -> [Sent] {
        _ = poll(timeoutS: timeoutS) { all.count >= n }
        return all
    }
}

/// In-memory model: fixed probabilities, optional gate that holds the inference thread, and a
/// log of the prompts in the order they ran.
final class FakeBackend: InferenceBackend {
    let order = Mutex<[String]>([])
    let gateOpen = Atomic<Bool>(true)
    let probabilities: [Double]

    init(probabilities: [Double] = [0.7, 0.3]) { self.probabilities = probabilities }

    var modelName: String { "fake" }

    private func passGate() { while !gateOpen.load(ordering: .relaxed) { usleep(1000) } }

    func decide(prompt: String, labels: [String], cacheKey: String) throws -> DecideResult {
        passGate()
        order.withLock { $0.append(prompt) }
        let p = Array(probabilities.prefix(labels.count))
        let best = p.indices.max { p[$0] < p[$1] } ?? 0
        return DecideResult(labels: labels, probabilities: p, logScores: p.map { Foundation.log($0) }, best: best,
                            promptTokens: 10, cachedTokens: 4, elapsedMs: 1)
    }

    let invalidations = Atomic<Int>(0)
    func invalidatePrefixCache() { invalidations.add(1, ordering: .relaxed) }

    func generate(prompt: String, options: GenerateOptions, onText: (String) -> Bool) throws -> GenerateResult {
        passGate()
        order.withLock { $0.append(prompt) }
        _ = onText("hi")
        return GenerateResult(text: "hi", promptTokens: 5, cachedTokens: 0, generatedTokens: 1, stopReason: .maxTokens,
                              promptMs: 1, generateMs: 1)
    }
}

func testConfig(_ extra: String = "", routes: String? = nil) throws -> BitnetdConfig {
    let dir = Fixture.tempDir()
    let path = dir + "/c.yaml"
    Fixture.write(path, """
    model: {path: /m.gguf}
    \(extra)
    \(routes ?? """
    routes:
      - name: d
        topic: sensors/+/t
        prompt: "T={{t}} in {{topic.1}}:"
        labels: [ok, hot]
        min_confidence: 0.6
      - name: g
        topic: ask
        input: text
        task: generate
        prompt: "Q: {{payload}}"
    """)
    """)
    return try ConfigLoader.load(path: path, environment: { _ in nil })
}

func message(_ topic: String, _ payload: String, expiry: UInt32? = nil, response: String? = nil, corr: String? = nil,
             receivedAt: UInt64 = monotonicNanoseconds()) -> MQTTMessage {
    MQTTMessage(topic: topic, payload: Array(payload.utf8), qos: 1, responseTopic: response,
                correlationData: corr.map { Array($0.utf8) }, messageExpiry: expiry, receivedAt: receivedAt)
}

@Suite struct DaemonCoreTests {
    @Test func decideBelowMinConfidenceIsUnsure() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try testConfig(), backend: FakeBackend(probabilities: [0.45, 0.55]), transport: t)
        core.startWorker()
        core.handle(message("sensors/attic/t", #"{"t":31.5}"#))
        let sent = t.wait(for: 1)
        #expect(sent.first?.topic == "bitnetd/decision/d")
        #expect(sent.first?.json["label"] == "unsure")
        #expect(sent.first?.json["probabilities"] == .object(["ok": 0.45, "hot": 0.55]))
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func nonFiniteProbabilitiesAreAnInferenceFailureNotADecision() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try testConfig(), backend: FakeBackend(probabilities: [.nan, 0.3]), transport: t)
        core.startWorker()
        core.handle(message("sensors/attic/t", #"{"t":31.5}"#))
        let sent = t.wait(for: 1)
        #expect(sent.first?.topic == "bitnetd/error")
        #expect(sent.first?.json["error"] == "inference_failed")
        #expect(!t.all.contains { $0.topic == "bitnetd/decision/d" })
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func reloadDropsThePrefixCacheBeforeTheNextJob() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        let core = DaemonCore(config: try testConfig(), backend: backend, transport: t)
        core.startWorker()
        core.handle(message("sensors/attic/t", #"{"t":31.5}"#))
        _ = t.wait(for: 1)
        #expect(backend.invalidations.load(ordering: .relaxed) == 0)
        core.apply(try testConfig())
        #expect(backend.invalidations.load(ordering: .relaxed) == 0, "only the inference thread touches the engine")
        core.handle(message("sensors/attic/t", #"{"t":32.5}"#))
        _ = t.wait(for: 2)
        #expect(backend.invalidations.load(ordering: .relaxed) == 1)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func decideJobsRunBeforeQueuedGenerateJobs() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        backend.gateOpen.store(false, ordering: .relaxed)
        let core = DaemonCore(config: try testConfig(), backend: backend, transport: t)
        core.startWorker()
        core.handle(message("ask", "first"))  // taken by the worker, held at the gate
        _ = poll(timeoutS: 2) { core.queue.count == 0 }
        core.handle(message("ask", "second"))
        core.handle(message("ask", "third"))
        core.handle(message("sensors/a/t", #"{"t":1}"#))
        backend.gateOpen.store(true, ordering: .relaxed)
        _ = t.wait(for: 4)
        #expect(backend.order.withLock { $0 } == ["Q: first", "T=1 in a:", "Q: second", "Q: third"])
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func expiredRequestIsAnsweredWithAnErrorNotComputed() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        let core = DaemonCore(config: try testConfig(), backend: backend, transport: t)
        core.startWorker()
        let longAgo = monotonicNanoseconds() - 3_000_000_000
        core.handle(message("sensors/a/t", #"{"t":1}"#, expiry: 2, response: "r/1", corr: "c1", receivedAt: longAgo))
        let sent = t.wait(for: 2)
        #expect(sent.map(\.topic) == ["bitnetd/error", "r/1"])
        #expect(sent.allSatisfy { $0.json["error"] == "expired" && $0.correlation == Array("c1".utf8) })
        #expect(backend.order.withLock { $0 }.isEmpty)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func fullQueueRejects() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        backend.gateOpen.store(false, ordering: .relaxed)
        let core = DaemonCore(config: try testConfig("queue: {size: 2, overflow: reject}"), backend: backend, transport: t)
        // No worker yet: the queue fills.
        for i in 0..<3 { core.handle(message("sensors/s\(i)/t", #"{"t":\#(i)}"#)) }
        let sent = t.all
        #expect(sent.count == 1)
        #expect(sent.first?.json["error"] == "queue_full")
        #expect(sent.first?.json["input_topic"] == "sensors/s2/t")
        backend.gateOpen.store(true, ordering: .relaxed)
        core.startWorker()
        #expect(t.wait(for: 3).count == 3)
        #expect(core.stats.snapshot(queue: 0).dropped == 1)
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func fullQueueDropsOldest() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try testConfig("queue: {size: 2, overflow: drop_oldest}"), backend: FakeBackend(), transport: t)
        for i in 0..<3 { core.handle(message("sensors/s\(i)/t", #"{"t":\#(i)}"#)) }
        let sent = t.all
        #expect(sent.count == 1)
        #expect(sent.first?.json["error"] == "dropped")
        #expect(sent.first?.json["input_topic"] == "sensors/s0/t")
        core.startWorker()
        let all = t.wait(for: 3)
        #expect(all.dropFirst().map(\.json["input_topic"]) == ["sensors/s1/t", "sensors/s2/t"])
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func shutdownAfterTheDrainTimeoutErrorsTheRest() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        backend.gateOpen.store(false, ordering: .relaxed)
        let core = DaemonCore(config: try testConfig(), backend: backend, transport: t)
        core.startWorker()
        // The first job is taken by the worker (held at the gate); the other four wait in the
        // queue (and would be decided together as one batch if there were time).
        // Requests with response topics: each gets its own answer there (the copies on the error
        // topic are rate-limited per route and code, so only the first of them is published).
        core.handle(message("sensors/s0/t", #"{"t":0}"#, response: "r/0"))
        _ = poll(timeoutS: 2) { core.queue.count == 0 }
        for i in 1..<5 { core.handle(message("sensors/s\(i)/t", #"{"t":\#(i)}"#, response: "r/\(i)")) }
        core.beginShutdown(drainTimeoutS: 0.05)
        usleep(100_000)
        backend.gateOpen.store(true, ordering: .relaxed)
        core.finishShutdown()
        let answers = t.all.filter { $0.topic.hasPrefix("r/") }
        #expect(answers.count == 5)
        #expect(answers.filter { $0.json["error"] == "shutting_down" }.count == 4)
        #expect(t.all.filter { $0.topic == "bitnetd/error" }.count == 1)
        core.handle(message("sensors/late/t", #"{"t":1}"#, response: "r/late"))
        #expect(t.all.last?.topic == "r/late")
        #expect(t.all.last?.json["error"] == "shutting_down")
    }

    @Test func reloadSwapsRoutesAndSubscriptions() throws {
        let t = RecordingTransport()
        let core = DaemonCore(config: try testConfig(), backend: FakeBackend(), transport: t)
        let updated = try testConfig(routes: """
        routes:
          - name: n
            topic: new/#
            shared_group: g
            prompt: "{{x}}"
            labels: [a, b]
        """)
        core.apply(updated)
        #expect(t.subs.withLock { $0 } == [MQTTSubscription(filter: "$share/g/new/#", qos: 1)])
        core.startWorker()
        core.handle(message("new/1/2", #"{"x":"y"}"#))
        core.handle(message("sensors/a/t", #"{"t":1}"#))
        #expect(t.wait(for: 1).map(\.topic) == ["bitnetd/decision/n"])
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }
}

@Suite struct RouterTests {
    func route(_ prompt: String, input: String = "json") throws -> (Router, RouteConfig) {
        let c = try testConfig(routes: """
        routes:
          - name: r
            topic: a/+/c
            input: \(input)
            prompt: \(JSON.string(prompt).serialized)
            labels: [x, y]
        """)
        return (Router(routes: c.routes, maxPayloadBytes: 128), c.routes[0])
    }

    func render(_ prompt: String, _ payload: String, topic: String = "a/b/c") throws -> Result<String, BadInput> {
        let (router, r) = try route(prompt)
        return router.prepare(route: r, message: message(topic, payload)).map(\.prompt)
    }

    @Test func templates() throws {
        let r = try render("{{a.b}} {{n}} {{f}} {{t}} {{topic.1}} {{arr.1}} {{o}}", #"{"a":{"b":"deep"},"n":3,"f":2.5,"t":true,"arr":[1,"two"],"o":{"k":[1]}}"#)
        #expect(r == .success(#"deep 3 2.5 true b two {"k":[1]}"#), "\(r)")
        #expect(try render("{{payload}}", #"{"x":1}"#) == .success(#"{"x":1}"#))
    }

    @Test func badInputClasses() throws {
        func code(_ r: Result<String, BadInput>) -> String? {
            if case .failure(let e) = r { return e.code }
            return nil
        }
        #expect(code(try render("{{a}}", "nope")) == "not_json")
        #expect(code(try render("{{a}}", "{}")) == "missing_field")
        #expect(code(try render("{{a.b}}", #"{"a":1}"#)) == "wrong_type")
        #expect(code(try render("{{a}}", "[1]")) == "wrong_type")
        #expect(code(try render("{{a}}", #"{"a":null}"#)) == "wrong_type")
        #expect(code(try render("{{a}}", String(repeating: " ", count: 129) + "{}")) == "oversize")
        let (router, r) = try route("{{a}}")
        let bad = MQTTMessage(topic: "a/b/c", payload: [0x7B, 0xC3, 0x28, 0x7D])
        if case .failure(let e) = router.prepare(route: r, message: bad) {
            #expect(e.code == "invalid_utf8")
            #expect(e.detail.contains("offset 1"))
        } else {
            Issue.record("invalid UTF-8 accepted")
        }
    }

    @Test func topicMatching() {
        #expect(topicMatches(filter: "a/+/c", topic: "a/b/c"))
        #expect(!topicMatches(filter: "a/+/c", topic: "a/b/c/d"))
        #expect(topicMatches(filter: "a/#", topic: "a"))
        #expect(topicMatches(filter: "a/#", topic: "a/b/c"))
        #expect(topicMatches(filter: "#", topic: "x/y"))
        #expect(!topicMatches(filter: "#", topic: "$SYS/x"))
        #expect(!topicMatches(filter: "+/x", topic: "$SYS/x"))
        #expect(topicMatches(filter: "a//b", topic: "a//b"))
        #expect(!topicMatches(filter: "a/b", topic: "a/c"))
    }
}

@Suite struct JSONTests {
    @Test func roundTrip() throws {
        let text = #"{"a":[1,2.5,-3e-7,true,false,null],"s":"q\"\\\n\u0001é😀","o":{}}"#
        let v = try JSON.parse(text)
        #expect(v["s"] == .string("q\"\\\n\u{01}é😀"))
        #expect(v.serialized == #"{"a":[1,2.5,-3e-07,true,false,null],"s":"q\"\\\n\u0001é😀","o":{}}"#)
        #expect(try JSON.parse(v.serialized) == v)
        #expect(try JSON.parse(#""\ud83d\ude00""#) == .string("😀"))
    }

    @Test func rejectsInvalid() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "tru", "\"\\x\"", "\"\u{01}\"", "{} x", "\"\\ud800\"", "1e999"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parse(bad) }
        }
        #expect(throws: JSONParseError.self) { try JSON.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)) }
    }
}

@Suite struct SupportTests {
    @Test func sha256KnownVectors() {
        func hex(_ s: String) -> String {
            var h = SHA256()
            h.update(Array(s.utf8))
            return SHA256.hex(h.finalize())
        }
        #expect(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var h = SHA256()
        let chunk = Array(repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { h.update(chunk) }
        #expect(SHA256.hex(h.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func correlationEncoding() {
        #expect(Payloads.correlationJSON(nil) == .null)
        #expect(Payloads.correlationJSON(Array("abc".utf8)) == "abc")
        #expect(Payloads.correlationJSON([0xFF, 0x00, 0x10]) == "base64:/wAQ")
    }

    @Test func timestampFormat() {
        #expect(isoTimestamp(0) == "1970-01-01T00:00:00.000Z")
        #expect(isoTimestamp(1_764_426_421.25) == "2025-11-29T14:27:01.250Z")
    }

    @Test func systemdNotify() throws {
        let path = Fixture.tempDir() + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        try #require(rc == 0)
        #expect(SystemdNotifier(socketPath: path).notify("READY=1"))
        var buf = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buf, 64, Int32(MSG_DONTWAIT))
        #expect(String(decoding: buf.prefix(max(0, n)), as: UTF8.self) == "READY=1")
    }
}

@Suite struct ReadingInputTests {
    @Test func readingsGoIntoRoutes() throws {
        let t = RecordingTransport()
        // Readings reach `input: plugin` routes only (PluginRouteTests covers windows and debounce).
        let routes = """
        routes:
          - name: d
            topic: sensors/+/t
            input: plugin
            prompt: "T={{t}} in {{topic.1}}:"
            labels: [ok, hot]
        """
        let core = DaemonCore(config: try testConfig(routes: routes), backend: FakeBackend(), transport: t)
        core.startWorker()
        core.handle(reading: Reading(topicSuffix: "t", fields: ["t": 48.5], timestamp: 0), topic: "sensors/cpu/t")
        let sent = t.wait(for: 1)
        #expect(sent.first?.json["route"] == "d")
        #expect(sent.first?.json["input_topic"] == "sensors/cpu/t")
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }
}

@Suite struct StartupCheckTests {
    @Test func memoryEstimateOfTheGeneratedModel() throws {
        let c = try testConfig()
        var model = c.model
        model.path = Fixture.model
        model.context = 256
        let m = try StartupChecks.estimateMemory(model: model)
        // 2 (K and V) × 2 layers × 2 KV heads × 32 head dim × 256 positions × 2 bytes (F16)
        #expect(m.kvCacheBytes == 2 * 2 * 2 * 32 * 256 * 2)
        #expect(m.modelBytes > 100_000)
        #expect(m.contextLength == 256)
        model.context = 0
        #expect(try StartupChecks.estimateMemory(model: model).contextLength == 512) // the file's trained context
        // The Q8_0 LM-head copy: 512 × 128 tied weights → one byte each plus a float per 32.
        #expect(m.headCopyBytes == 0)
        model.lmHead = "q8_0"
        let withCopy = try StartupChecks.estimateMemory(model: model)
        #expect(withCopy.headCopyBytes == 512 * 128 + 512 * 128 / 32 * 4)
        #expect(withCopy.total == withCopy.modelBytes + withCopy.kvCacheBytes + withCopy.headCopyBytes)
    }

    @Test func verdicts() {
        let big = StartupChecks.MemoryEstimate(modelBytes: 1_250_000_000, kvCacheBytes: 300 << 20, contextLength: 4096,
                                               availableBytes: 1 << 30)
        #expect(StartupChecks.verdict(big, policy: "refuse")
            == .refuse("model 1192 MiB + KV cache 300 MiB for 4096 tokens = 1492 MiB; MemAvailable 1024 MiB"))
        if case .warn = StartupChecks.verdict(big, policy: "warn") {} else { Issue.record("expected a warning") }
        if case .ok = StartupChecks.verdict(big, policy: "off") {} else { Issue.record("expected ok") }
        var small = big
        small.availableBytes = 4 << 30
        if case .ok = StartupChecks.verdict(small, policy: "refuse") {} else { Issue.record("expected ok") }
    }
}
