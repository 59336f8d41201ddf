import Foundation
import Glibc
import Mosquitto
import Platform
import Synchronization
import Testing
import TestKit

/// Figures for the issue notes, not a timed test: runs only with BITNETD_MEASURE=1 (use a release
/// binary via BITNETD_BIN). Prints end-to-end latency (publish → decision received) for 100
/// sequential request/response round trips, and the daemon's idle RSS.
@Suite struct MeasurementTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["BITNETD_MEASURE"] == "1"))
    func latencyAndFootprint() throws {
        // Mosquitto's default (set_tcp_nodelay false) adds Nagle + delayed-ACK stalls of ~40 ms to
        // every small message it forwards; measure both.
        let nodelay = ProcessInfo.processInfo.environment["BITNETD_MEASURE_NODELAY"] == "1"
        let broker = try Broker(extra: nodelay ? "set_tcp_nodelay true" : "")
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port).replacingOccurrences(of: "level: debug", with: "level: info"))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("connected to 127.0.0.1"))
        usleep(1_000_000)
        let idle = procStatus(daemon.child!.pid)

        final class Box: Sendable {
            let got = Mutex<[String: UInt64]>([:])
            let inner = Mutex<[Double]>([])
        }
        let box = Box()
        let client = try MQTTClient(options: MQTTClientOptions(host: "127.0.0.1", port: broker.port, clientID: "measure",
                                                               cleanStart: true, sessionExpiry: 0), logger: Logger(label: "test", handler: { _, _ in }))
        client.setSubscriptions([MQTTSubscription(filter: "measure/reply", qos: 1)])
        client.setHandlers(onMessage: { m in
            let key = String(decoding: m.correlationData ?? [], as: UTF8.self)
            box.got.withLock { $0[key] = monotonicNanoseconds() }
            if let l = m.json["latency_ms"] as? Double { box.inner.withLock { $0.append(l) } }
        }, onConnection: { _, _ in })
        try client.start()
        #expect(poll(timeoutS: 5) { client.isConnected })
        usleep(200_000)

        var latencies: [Double] = []
        for i in 0..<110 {
            let key = "r\(i)"
            let t0 = monotonicNanoseconds()
            try client.publish(topic: "home/m\(i % 7)/door", payload: Array(#"{"state":"open"}"#.utf8), qos: 1, retain: false,
                               properties: MQTTPublishProperties(responseTopic: "measure/reply", correlationData: Array(key.utf8)))
            _ = poll(timeoutS: 10) { box.got.withLock { $0[key] } != nil }
            if let t1 = box.got.withLock({ $0[key] }), i >= 10 { latencies.append(Double(t1 - t0) / 1e6) }
        }
        client.stop()
        latencies.sort()
        let p50 = latencies[latencies.count / 2], p95 = latencies[Int(Double(latencies.count) * 0.95)]
        let busy = procStatus(daemon.child!.pid)
        let inside = box.inner.withLock { $0 }.dropFirst(10).sorted()
        print("MEASURE binary=\(Fixture.binary) nodelay=\(nodelay) requests=\(latencies.count) p50_ms=\(p50) p95_ms=\(p95) daemon_p50_ms=\(inside[inside.count / 2]) daemon_p95_ms=\(inside[Int(Double(inside.count) * 0.95)]) idle=\(idle) after=\(busy)")
        #expect(latencies.count == 100)
    }
}

func procStatus(_ pid: pid_t) -> String {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { $0.hasPrefix("VmRSS") || $0.hasPrefix("RssAnon") || $0.hasPrefix("RssFile") }
        .map { $0.replacingOccurrences(of: "\t", with: "").replacingOccurrences(of: " ", with: "") }.joined(separator: ",")
}
