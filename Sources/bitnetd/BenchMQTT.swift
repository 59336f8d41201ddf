import ArgumentParser
import BitNet
import JSONValue
import Mosquitto
import Platform
import SensorPlugins
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `bench --decide --mqtt HOST[:PORT]`: the latency a deployment sees. Starts `bitnetd run` on
/// the model with one decide route against the broker, publishes the readings as MQTT 5
/// requests (response topic + correlation data) and times publish → decision received, first
/// one request at a time, then all at once (the daemon's queue batches them).
extension Bench {
    func runDecideMQTT(path: String, threads: Int, broker: String, prompts: [String], labels: [String], kernel: String,
                       into out: inout [String], json jsonRows: inout [String]) throws {
        let parts = broker.split(separator: ":", maxSplits: 1)
        let host = String(parts.first ?? "127.0.0.1")
        guard let port = parts.count > 1 ? Int(parts[1]) : 1883, (1...65535).contains(port), !host.isEmpty else {
            throw ValidationError("--mqtt wants HOST or HOST:PORT, got '\(broker)'")
        }
        var dirTemplate = Array("/tmp/bitnetd-bench-mqtt-XXXXXX".utf8CString)
        guard let dirPtr = mkdtemp(&dirTemplate) else { throw fail(RequestError("cannot create a temp folder: \(String(cString: strerror(errno)))")) }
        let dir = String(cString: dirPtr)
        defer {
            unlink(dir + "/bench.yaml")
            rmdir(dir)
        }
        var modelPath = path
        if let r = realpath(path, nil) {
            modelPath = String(cString: r)
            free(r)
        }
        let prefix = "bitnetd-bench-\(getpid())"
        func q(_ s: String) -> String { JSON.string(s).serialized }  // a JSON string is a YAML string
        let config = """
        model: {path: \(q(modelPath)), threads: \(threads), context: \(decidePrompt + 64), memory_check: warn}
        mqtt: {host: \(q(host)), port: \(port), client_id: \(q(prefix + "-daemon")), clean_start: true, session_expiry: 0, topic_prefix: \(q(prefix))}
        queue: {size: 4096, batch_max: \(max(1, decideBatch))}
        limits: {max_payload_bytes: 16384, memory_budget_mb: 160}
        stats: {interval_s: 0}
        log: {level: warning}
        routes:
          - name: bench
            topic: \(q(prefix + "/in"))
            input: text
            prompt: "{{payload}}"
            labels: [\(labels.map { q(String($0.drop { $0 == " " })) }.joined(separator: ", "))]
            output: {topic: \(q(prefix + "/out"))}

        """
        guard let f = fopen(dir + "/bench.yaml", "w") else { throw fail(RequestError("cannot write \(dir)/bench.yaml")) }
        fputs(config, f)
        fclose(f)

        final class Replies: Sendable {
            let at = Mutex<[String: (UInt64, Double)]>([:])
            let online = Atomic<Bool>(false)
            /// The daemon's output (its log) and, once it ended, how.
            let log = Mutex<[UInt8]>([])
            let exit = Mutex<ChildProcess.Status?>(nil)
            var logTail: String {
                let text = String(decoding: log.withLock { $0 }, as: UTF8.self)
                return text.isEmpty ? "(empty)" : String(text.suffix(2000))
            }
        }
        let replies = Replies()
        let client = try MQTTClient(options: MQTTClientOptions(host: host, port: port, clientID: prefix + "-bench",
                                                               cleanStart: true, sessionExpiry: 0), logger: Logger(label: "test", handler: { _, _ in }))
        client.setSubscriptions([MQTTSubscription(filter: prefix + "-client/reply", qos: 1),
                                 MQTTSubscription(filter: prefix + "/status", qos: 1)])
        client.setHandlers(onMessage: { m in
            if m.topic == prefix + "/status" {
                if m.payload == Array("online".utf8) { replies.online.store(true, ordering: .relaxed) }
                return
            }
            let key = String(decoding: m.correlationData ?? [], as: UTF8.self)
            var inner = -1.0
            if case .number(let v)? = (try? JSON.parse(String(decoding: m.payload, as: UTF8.self)))?["latency_ms"] { inner = v }
            replies.at.withLock { $0[key] = (m.receivedAt, inner) }
        }, onConnection: { _, _ in })
        try client.start()
        defer { client.stop() }

        let daemon: ChildProcess
        do {
            // In bench's own process group: a Ctrl-C stops the daemon with the bench (in a group of
            // its own it survived an interrupted bench).
            daemon = try ChildProcess.spawn(["/proc/self/exe", "run", "--config", dir + "/bench.yaml"], environment: nil,
                                            workingDirectory: nil, ownProcessGroup: false,
                                            onOutput: { _, bytes in replies.log.withLock { $0 += bytes } },
                                            onExit: { status in replies.exit.withLock { $0 = status } })
        } catch {
            throw fail(RequestError("cannot start bitnetd run: \(error)"))
        }
        func exited() -> Bool { replies.exit.withLock { $0 } != nil }
        defer {
            // SIGTERM (the daemon drains and says offline), SIGKILL if it is still there after 30 s.
            daemon.signal(SIGTERM)
            let end = monotonicMilliseconds() + 30_000
            while !exited() && monotonicMilliseconds() < end { usleep(10_000) }
            if !exited() { daemon.signal(SIGKILL) }
        }
        eprint("waiting for the daemon…")
        func waitUntil(_ seconds: Double, _ cond: () -> Bool) -> Bool {
            let end = monotonicMilliseconds() + seconds * 1000
            while monotonicMilliseconds() < end {
                if cond() { return true }
                if exited() { return false }
                usleep(500)
            }
            return cond()
        }
        guard waitUntil(120, { replies.online.load(ordering: .relaxed) && client.isConnected }) else {
            throw fail(RequestError("the daemon did not come online on \(host):\(port) (its log: \(replies.logTail))"))
        }
        usleep(200_000)

        func send(_ key: String, _ prompt: String) throws {
            try client.publish(topic: prefix + "/in", payload: Array(prompt.utf8), qos: 1, retain: false,
                               properties: MQTTPublishProperties(responseTopic: prefix + "-client/reply", correlationData: Array(key.utf8)))
        }
        func row(_ name: String, _ lat: [Double], _ inner: [Double], perS: Double) {
            let lat = lat.sorted(), inner = inner.sorted()
            let pct = percentile
            out.append("| \(kernel) | \(threads) | \(name) | \(decidePrompt) (\(decideConstant) constant) | \(fmt(pct(lat, 0.5), 2)) | \(fmt(pct(lat, 0.95), 2)) | \(fmt(pct(lat, 0.99), 2)) | \(fmt(perS, 2)) |")
            out.append("|   in the daemon (decision latency_ms: arrival → published): p50 \(fmt(pct(inner, 0.5), 2)) ms, p95 \(fmt(pct(inner, 0.95), 2)) ms |")
            jsonRows.append("{\"threads\":\(threads),\"kernel\":\"\(kernel)\",\"variant\":\(jsonString(name)),\"labels\":\(labels.count),\"p50_ms\":\(pct(lat, 0.5)),\"p95_ms\":\(pct(lat, 0.95)),\"p99_ms\":\(pct(lat, 0.99)),\"decisions_per_s\":\(perS),\"daemon_p50_ms\":\(pct(inner, 0.5))}")
        }

        // One at a time (the first three warm the route's prefix cache and are not counted).
        var lat: [Double] = [], inner: [Double] = []
        let t0 = monotonicMilliseconds()
        for (i, p) in prompts.enumerated() {
            let key = "s\(i)"
            let sent = monotonicNanoseconds()
            try send(key, p)
            guard waitUntil(120, { replies.at.withLock { $0[key] } != nil }), let (at, d) = replies.at.withLock({ $0[key] }) else {
                throw fail(RequestError("no decision for request \(i) within 120 s (daemon log: \(replies.logTail))"))
            }
            if i >= 3 {
                lat.append(Double(at - sent) / 1e6)
                inner.append(d)
            }
        }
        row("MQTT round trip, one at a time", lat, inner, perS: Double(prompts.count) / (monotonicMilliseconds() - t0) * 1000)

        // All at once: the daemon's queue hands them to the engine in batches.
        let burst = Array(prompts.dropFirst(3))
        var sentAt: [UInt64] = []
        let b0 = monotonicMilliseconds()
        for (i, p) in burst.enumerated() {
            sentAt.append(monotonicNanoseconds())
            try send("b\(i)", p)
        }
        guard waitUntil(600, { replies.at.withLock { m in burst.indices.allSatisfy { m["b\($0)"] != nil } } }) else {
            throw fail(RequestError("not every burst request was answered (daemon log: \(replies.logTail))"))
        }
        let wall = monotonicMilliseconds() - b0
        let got = replies.at.withLock { m in burst.indices.map { m["b\($0)"]! } }
        row("MQTT burst of \(burst.count), batch_max \(max(1, decideBatch))", zip(got, sentAt).map { Double($0.0.0 - $0.1) / 1e6 },
            got.map(\.1), perS: Double(burst.count) / wall * 1000)
    }
}
