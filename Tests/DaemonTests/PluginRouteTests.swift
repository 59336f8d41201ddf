import BitNet
@testable import Daemon
import DaemonConfig
import Foundation
import Glibc
import Mosquitto
import SensorPlugins
import Testing
import TestKit

/// `input: plugin` routes in the core: windows, debounce, no MQTT subscription; HA discovery documents.
@Suite struct PluginRouteTests {
    static let routes = """
    routes:
      - name: w
        topic: bitnetd/sensors/probe/+
        input: plugin
        window: {count: 3}
        prompt: "{{topic.3}} n={{window.count}} mean={{window.mean.t}} min={{window.min.t}} max={{window.max.t}} last={{window.last.t}} now={{t}}"
        labels: [ok, hot]
        output: {topic: "out/{{topic.3}}"}
      - name: deb
        topic: bitnetd/sensors/probe/#
        input: plugin
        debounce: {on_change: true}
        prompt: "t={{t}}"
        labels: [ok, hot]
      - name: m
        topic: mqtt/in
        prompt: "{{t}}"
        labels: [ok, hot]
    """

    /// A plugin that reports on ever new topics cannot grow a route's windows without bound: at
    /// most `maxWindowsPerRoute`, the one updated longest ago replaced.
    @Test func windowsPerRouteAreBounded() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        let core = DaemonCore(config: try testConfig(routes: Self.routes), backend: backend, transport: t)
        for i in 0..<100 {
            core.handle(reading: Reading(topicSuffix: "s\(i)", fields: ["t": .number(Double(i))], timestamp: 1000 + Double(i)),
                        topic: "bitnetd/sensors/probe/s\(i)")
        }
        #expect(core.intake.windowCounts["w"] == ReadingWindow.maxWindowsPerRoute)
        core.startWorker()
        // The newest topic kept its window (n = 2 now); the oldest lost it (n = 1, a fresh one).
        core.handle(reading: Reading(topicSuffix: "s99", fields: ["t": .number(1)], timestamp: 2000), topic: "bitnetd/sensors/probe/s99")
        core.handle(reading: Reading(topicSuffix: "s0", fields: ["t": .number(1)], timestamp: 2001), topic: "bitnetd/sensors/probe/s0")
        // (Earlier jobs of the flood may have been dropped from the queue; the last two are there.)
        _ = poll(timeoutS: 10) { backend.order.withLock { $0.contains { $0.hasPrefix("s99 n=2") } && $0.last?.hasPrefix("s0 ") == true } }
        let prompts = backend.order.withLock { $0 }
        #expect(prompts.last { $0.hasPrefix("s99 ") }?.hasPrefix("s99 n=2") == true, "\(prompts.suffix(6))")
        #expect(prompts.last { $0.hasPrefix("s0 ") }?.hasPrefix("s0 n=1") == true, "\(prompts.suffix(6))")
        #expect(core.intake.windowCounts["w"] == ReadingWindow.maxWindowsPerRoute)
        core.beginShutdown(drainTimeoutS: 5)
        core.finishShutdown()
    }

    @Test func windowedRouteRendersTheWindowAndDebounceHoldsRepeats() throws {
        let t = RecordingTransport()
        let backend = FakeBackend()
        let core = DaemonCore(config: try testConfig(routes: Self.routes), backend: backend, transport: t)
        #expect(core.subscriptions.map(\.filter) == ["mqtt/in"])
        core.startWorker()
        for (i, v) in [10.0, 20, 30, 40.5].enumerated() {
            core.handle(reading: Reading(topicSuffix: "a", fields: ["t": .number(v)], timestamp: 1000 + Double(i)),
                        topic: "bitnetd/sensors/probe/a")
        }
        // A reading on another topic has its own window.
        core.handle(reading: Reading(topicSuffix: "b", fields: ["t": .number(5)], timestamp: 1010), topic: "bitnetd/sensors/probe/b")
        // An MQTT message on a plugin route's topic does not reach it.
        core.handle(message("bitnetd/sensors/probe/a", #"{"t":99}"#))
        _ = poll(timeoutS: 5) { backend.order.withLock { $0.count } >= 10 }
        let prompts = backend.order.withLock { $0 }.filter { $0.hasPrefix("a ") || $0.hasPrefix("b ") }
        #expect(prompts == [
            "a n=1 mean=10 min=10 max=10 last=10 now=10",
            "a n=2 mean=15 min=10 max=20 last=20 now=20",
            "a n=3 mean=20 min=10 max=30 last=30 now=30",
            "a n=3 mean=30.167 min=20 max=40.5 last=40.5 now=40.5",
            "b n=1 mean=5 min=5 max=5 last=5 now=5",
        ])
        _ = t.wait(for: 6)
        usleep(200_000)
        let sent = t.all
        #expect(sent.filter { $0.topic == "out/a" }.count == 4)
        #expect(sent.filter { $0.topic == "out/b" }.count == 1)
        // FakeBackend always answers "ok": the debounced route publishes it once.
        #expect(sent.filter { $0.topic == "bitnetd/decision/deb" }.count == 1)
        #expect(!backend.order.withLock { $0 }.contains("99"))
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }

    @Test func windowTemplatesNeedAWindowedPluginRoute() throws {
        func errors(_ routes: String) -> String {
            do {
                _ = try testConfig(routes: routes)
                return ""
            } catch {
                return "\(error)"
            }
        }
        let noWindow = errors("""
        routes:
          - name: a
            topic: x
            input: plugin
            prompt: "{{window.mean.t}}"
            labels: [a, b]
        """)
        #expect(noWindow.contains("routes[0].prompt: {{window.…}} needs a reading window"), "\(noWindow)")
        let mqttWindow = errors("""
        routes:
          - name: a
            topic: x
            window: {count: 2}
            debounce: {on_change: true}
            prompt: "{{window.bogus.t}} {{window.mean}}"
            labels: [a, b]
        """)
        #expect(mqttWindow.contains("routes[0].window: windows are for routes fed by plugin readings"), "\(mqttWindow)")
        #expect(mqttWindow.contains("routes[0].debounce: debounce is for routes fed by plugin readings"), "\(mqttWindow)")
        #expect(mqttWindow.contains("'{{window.bogus.t}}': expected window.count"), "\(mqttWindow)")
        let empty = errors("""
        routes:
          - name: a
            topic: x
            input: plugin
            window: {}
            prompt: "{{t}}"
            labels: [a, b]
        """)
        #expect(empty.contains("routes[0].window: a window needs count, span_s or both"), "\(empty)")
    }

    @Test func discoveryDocuments() throws {
        let config = try testConfig("homeassistant: {enabled: true, prefix: ha, node_id: n1, device_name: Kitchen}\nmqtt: {topic_prefix: kp}")
        let plan = HomeAssistantDiscovery.messages(config: config, model: "demo")
        // d: output topic is the default kp/decision/d; g is generate.
        #expect(plan.messages.map(\.topic) == ["ha/sensor/n1/d/config"])
        let doc = plan.messages[0].payload
        #expect(doc["state_topic"] == "kp/decision/d")
        #expect(doc["availability_topic"] == "kp/status")
        #expect(doc["device"]?["name"] == "Kitchen")
        let off = try testConfig()
        #expect(HomeAssistantDiscovery.messages(config: off, model: "demo").messages.isEmpty)
    }
}
