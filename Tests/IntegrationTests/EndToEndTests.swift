import Foundation
import Glibc
import Mosquitto
import Testing
import TestKit

/// End-to-end: a real mosquitto, the built `bitnetd`, `mosquitto_pub` as the requester and a
/// libmosquitto observer. Each test has its own broker on its own port.

let defaultRoutes = """
routes:
  - name: door
    topic: home/+/door
    prompt: "The {{topic.1}} door is {{state}}. Answer:"
    labels: [ok, alert]
    output: {topic: "home/{{topic.1}}/door/decision"}
  - name: chat
    topic: chat/in
    input: text
    task: generate
    prompt: "User: {{payload}}"
    max_tokens: 8
    temperature: 0
"""

func daemonConfig(port: Int, clientID: String = "bitnetd-\(UUID().uuidString.prefix(8))", routes: String = defaultRoutes,
                  mqtt: String = "", queue: String = "", statsInterval: Int = 0, extra: String = "") -> String {
    """
    model:
      path: \(Fixture.model)
      threads: 1
      context: 256
    mqtt:
      host: 127.0.0.1
      port: \(port)
      client_id: \(clientID)
      reconnect: {min_backoff_s: 1, max_backoff_s: 1}
    \(mqtt)
    queue:
      size: 64
    \(queue)
    limits:
      max_payload_bytes: 256
    stats:
      interval_s: \(statsInterval)
    log:
      level: debug
    \(extra)
    \(routes)

    """
}

/// Keys of a decision document, in the order DESIGN.md §8 lists them.
let decisionKeys = ["schema", "route", "input_topic", "label", "probabilities", "text", "tokens", "latency_ms", "model", "ts", "correlation"]
let errorKeys = ["schema", "route", "input_topic", "error", "detail", "ts"]

func keysInOrder(_ m: MQTTMessage) -> [String] {
    // JSONSerialization loses the order; read the top-level keys from the text.
    var keys: [String] = []
    var depth = 0, i = m.payload.startIndex
    let p = m.payload
    while i < p.count {
        let c = p[i]
        if c == UInt8(ascii: "\"") {
            var j = i + 1
            while p[j] != UInt8(ascii: "\"") { j += p[j] == UInt8(ascii: "\\") ? 2 : 1 }
            if depth == 1, j + 1 < p.count, p[j + 1] == UInt8(ascii: ":") { keys.append(String(decoding: p[(i + 1)..<j], as: UTF8.self)) }
            i = j + 1
            continue
        }
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
        if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") { depth -= 1 }
        i += 1
    }
    return keys
}

@Suite(.serialized) struct EndToEndTests {
    @Test func decideAndGenerate() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["#"])
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port))
        defer { daemon.stop() }
        let status = observer.wait(for: 1, on: "bitnetd/status")
        #expect(status.last?.text == "online", "\(daemon.log)")
        #expect(status.last?.retain == false) // live delivery

        mqttPublish(port: broker.port, topic: "home/kitchen/door", message: #"{"state":"open"}"#)
        let d = observer.wait(for: 1, on: "home/kitchen/door/decision")
        try #require(d.count == 1, "\(daemon.log)")
        #expect(keysInOrder(d[0]) == decisionKeys)
        let j = d[0].json
        #expect(j["schema"] as? Int == 1)
        #expect(j["route"] as? String == "door")
        #expect(j["input_topic"] as? String == "home/kitchen/door")
        let label = j["label"] as? String
        #expect(label == "ok" || label == "alert")
        let probs = j["probabilities"] as? [String: Double] ?? [:]
        #expect(Set(probs.keys) == ["ok", "alert"])
        #expect(abs(probs.values.reduce(0, +) - 1) < 1e-4)
        #expect(probs[label ?? ""] == probs.values.max())
        #expect(j["text"] is NSNull)
        #expect(j["correlation"] is NSNull)
        let tokens = j["tokens"] as? [String: Int] ?? [:]
        #expect((tokens["prompt"] ?? 0) > 0)
        #expect(tokens["generated"] == 0)
        #expect(j["model"] as? String == "bitnetd-random")
        #expect((j["ts"] as? String)?.hasSuffix("Z") == true)

        mqttPublish(port: broker.port, topic: "chat/in", message: "hello there")
        let g = observer.wait(for: 1, on: "bitnetd/decision/chat")
        try #require(g.count == 1, "\(daemon.log)")
        #expect(keysInOrder(g[0]) == decisionKeys)
        let gj = g[0].json
        #expect(gj["label"] is NSNull)
        #expect(gj["text"] is String)
        #expect((gj["tokens"] as? [String: Int])?["generated"] ?? 0 > 0)
        #expect((gj["probabilities"] as? [String: Any])?.isEmpty == true)

        #expect(daemon.stop() == 0)
        let offline = observer.wait(for: 2, on: "bitnetd/status")
        #expect(offline.last?.text == "offline")
    }

    @Test func requestResponseWithCorrelationData() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["replies/#", "bitnetd/status"])
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port))
        defer { daemon.stop() }
        #expect(observer.wait(for: 1, on: "bitnetd/status").last?.text == "online")

        mqttPublish(port: broker.port, topic: "home/hall/door", message: #"{"state":"closed"}"#,
                    extra: ["-D", "publish", "response-topic", "replies/app-1", "-D", "publish", "correlation-data", "req-42"])
        mqttPublish(port: broker.port, topic: "chat/in", message: "hi",
                    extra: ["-D", "publish", "response-topic", "replies/app-2", "-D", "publish", "correlation-data", "req-43"])
        let r1 = observer.wait(for: 1, on: "replies/app-1")
        let r2 = observer.wait(for: 1, on: "replies/app-2")
        try #require(r1.count == 1 && r2.count == 1, "\(daemon.log)")
        #expect(r1[0].correlationData == Array("req-42".utf8))
        #expect(r1[0].json["correlation"] as? String == "req-42")
        #expect(r1[0].json["route"] as? String == "door")
        #expect(r2[0].correlationData == Array("req-43".utf8))
        #expect(r2[0].json["correlation"] as? String == "req-43")

        // A bad request is answered on its response topic too.
        mqttPublish(port: broker.port, topic: "home/hall/door", message: "{}",
                    extra: ["-D", "publish", "response-topic", "replies/app-3", "-D", "publish", "correlation-data", "req-44"])
        let r3 = observer.wait(for: 1, on: "replies/app-3")
        try #require(r3.count == 1)
        #expect(r3[0].json["error"] as? String == "missing_field")
        #expect(r3[0].correlationData == Array("req-44".utf8))
    }

    @Test func everyBadInputClassIsReportedAndTheNextMessageServed() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["bitnetd/error", "home/+/door/decision", "bitnetd/status"])
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port))
        defer { daemon.stop() }
        #expect(observer.wait(for: 1, on: "bitnetd/status").last?.text == "online")

        let dir = daemon.dir
        let badUTF8 = dir + "/bad-utf8.bin"
        FileManager.default.createFile(atPath: badUTF8, contents: Data([0x7B, 0x22, 0x73, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D]))
        let big = #"{"state":""# + String(repeating: "x", count: 300) + #""}"#
        let cases: [(String, String?, String?)] = [
            ("not_json", "this is not json", nil),
            ("missing_field", #"{"other":1}"#, nil),
            ("wrong_type", #"["state","open"]"#, nil),
            ("oversize", big, nil),
            ("invalid_utf8", nil, badUTF8),
        ]
        for (i, (code, message, file)) in cases.enumerated() {
            mqttPublish(port: broker.port, topic: "home/room\(i)/door", message: message, file: file)
            let errors = observer.wait(for: i + 1, on: "bitnetd/error")
            try #require(errors.count == i + 1, "no error for \(code): \(daemon.log)")
            let e = errors[i]
            #expect(keysInOrder(e) == errorKeys)
            #expect(e.json["error"] as? String == code)
            #expect(e.json["route"] as? String == "door")
            #expect(e.json["input_topic"] as? String == "home/room\(i)/door")
            #expect((e.json["detail"] as? String)?.isEmpty == false)
            // The next message is served normally.
            mqttPublish(port: broker.port, topic: "home/ok\(i)/door", message: #"{"state":"open"}"#)
            #expect(observer.wait(for: 1, on: "home/ok\(i)/door/decision").count == 1, "not served after \(code)")
        }
        // One log line per bad message.
        let lines = daemon.log.split(separator: "\n").filter { $0.contains("warning bitnetd: route door:") }
        #expect(lines.count == cases.count)
    }

    @Test func sharedGroupAnswersEachMessageOnce() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["out/#", "bitnetd/status"])
        func routes(_ who: String) -> String {
            """
            routes:
              - name: share
                topic: jobs/+
                shared_group: fleet
                prompt: "Job {{n}}. Answer:"
                labels: [yes, no]
                output: {topic: "out/\(who)/{{topic.1}}"}
            """
        }
        let a = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes("a")))
        let b = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes("b")))
        defer { a.stop(); b.stop() }
        #expect(observer.wait(for: 2, on: "bitnetd/status").count == 2)
        #expect(a.waitForLog("subscribed to $share/fleet/jobs/+") && b.waitForLog("subscribed to $share/fleet/jobs/+"))

        let n = 20
        for i in 0..<n { mqttPublish(port: broker.port, topic: "jobs/\(i)", message: #"{"n":\#(i)}"#) }
        func answers() -> [MQTTMessage] { observer.messages.filter { $0.topic.hasPrefix("out/") } }
        #expect(poll(timeoutS: 20) { answers().count >= n })
        usleep(300_000)
        let all = answers()
        #expect(all.count == n, "each message must be answered exactly once")
        let jobs = all.map { $0.topic.split(separator: "/")[2] }
        #expect(Set(jobs).count == n)
        #expect(all.contains { $0.topic.hasPrefix("out/a/") })
        #expect(all.contains { $0.topic.hasPrefix("out/b/") })
    }

    @Test func brokerRestartReconnects() throws {
        let broker = try Broker(persistence: true)
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("connected to 127.0.0.1"))
        broker.stop()
        #expect(daemon.waitForLog("lost"), "\(daemon.log)")
        try broker.start()
        let observer = try Observer(port: broker.port, topics: ["home/+/door/decision"])
        _ = poll(timeoutS: 20) { daemon.log.components(separatedBy: "connected to 127.0.0.1").count > 2 }
        mqttPublish(port: broker.port, topic: "home/back/door", message: #"{"state":"open"}"#)
        #expect(observer.wait(for: 1, on: "home/back/door/decision").count == 1, "\(daemon.log)")
    }

    @Test func persistentSessionDeliversRequestsSentWhileDown() throws {
        let broker = try Broker(persistence: true)
        let config = daemonConfig(port: broker.port, clientID: "persistent-\(broker.port)")
        let observer = try Observer(port: broker.port, topics: ["home/+/door/decision"])
        let first = DaemonProcess(config: config)
        #expect(first.waitForLog("subscribed to home/+/door"))
        #expect(first.stop() == 0)
        for i in 0..<3 { mqttPublish(port: broker.port, topic: "home/while\(i)/door", message: #"{"state":"open"}"#) }
        let second = DaemonProcess(config: config, dir: first.dir)
        defer { second.stop() }
        _ = poll(timeoutS: 20) { observer.messages.count >= 3 }
        let answers = observer.messages
        #expect(Set(answers.map(\.topic)) == ["home/while0/door/decision", "home/while1/door/decision", "home/while2/door/decision"], "\(second.log)")
    }

    @Test func sigtermWithAFullQueueAnswersEveryJob() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["replies/drain", "bitnetd/error", "bitnetd/status", "bitnetd/stats"])
        let routes = """
        routes:
          - name: chat
            topic: chat/in
            input: text
            task: generate
            prompt: "User: {{payload}}"
            max_tokens: 200
            temperature: 0
        """
        // No race with the CPU: the inference thread is held (test hook) while every request
        // arrives and while SIGTERM starts the drain; a drain timeout of 0 then cuts every job,
        // however fast or slow this machine is.
        let dir = Fixture.tempDir()
        let hold = dir + "/hold"
        Fixture.write(hold, "")
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes, queue: "  drain_timeout_s: 0", statsInterval: 1),
                                   dir: dir, env: ["BITNETD_TEST_HOLD_JOBS": hold])
        #expect(observer.wait(for: 1, on: "bitnetd/status").last?.text == "online")
        let lines = daemon.dir + "/lines.txt"
        let n = 60
        Fixture.write(lines, (0..<n).map { "request \($0)" }.joined(separator: "\n") + "\n")
        // Each request carries a response topic: every one is owed its own answer (the copies on
        // the error topic are rate-limited per route and code).
        Fixture.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-V", "5", "-q", "1", "-t", "chat/in", "-l",
                     "-D", "publish", "response-topic", "replies/drain"], stdin: lines)
        // Every request is in the daemon (one held by the inference thread, the rest queued).
        #expect(poll(timeoutS: 30) {
            observer.messages(on: "bitnetd/stats").contains { $0.json["received"] as? Int == n && $0.json["queue"] as? Int == n - 1 }
        }, "\(daemon.log)")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForLog("draining: \(n - 1) queued jobs"), "\(daemon.log)")
        unlink(hold)
        #expect(daemon.child?.wait(timeoutS: 30) == 0)
        let answers = observer.wait(for: n, on: "replies/drain", timeoutS: 10)
        let errors = answers.filter { $0.json["error"] != nil }
        let decided = answers.count - errors.count
        #expect(decided + errors.count == n, "decided \(decided), errors \(errors.count)\n\(daemon.log)")
        #expect(errors.allSatisfy { $0.json["error"] as? String == "shutting_down" })
        #expect(errors.count == n, "the drain timeout (0 s) cuts every job, the held one included")
        #expect(observer.messages(on: "bitnetd/error").count == 1, "one copy on the error topic, the rest counted")
        #expect(observer.wait(for: 2, on: "bitnetd/status").last?.text == "offline")
    }

    @Test func sighupWithABadConfigKeepsTheOldOne() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["home/+/door/decision", "new/out"])
        let good = daemonConfig(port: broker.port, clientID: "hup-\(broker.port)")
        let daemon = DaemonProcess(config: good)
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to home/+/door"))

        daemon.rewriteConfig(good.replacingOccurrences(of: "labels: [ok, alert]", with: "labels: [ok, alert]\n    min_confidence: 7"))
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("keeping the running one"))
        #expect(daemon.log.contains("bitnetd.yaml:"))
        #expect(daemon.log.contains("routes[0].min_confidence: expected 0...1, got 7"))
        mqttPublish(port: broker.port, topic: "home/a/door", message: #"{"state":"open"}"#)
        #expect(observer.wait(for: 1, on: "home/a/door/decision").count == 1)

        // A good new config is applied: a new route answers.
        daemon.rewriteConfig(good + """
          - name: extra
            topic: new/in
            prompt: "x {{v}}:"
            labels: [a, b]
            output: {topic: new/out}

        """)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("configuration reloaded: 3 routes"))
        #expect(daemon.waitForLog("subscribed to new/in"))
        mqttPublish(port: broker.port, topic: "new/in", message: #"{"v":1}"#)
        #expect(observer.wait(for: 1, on: "new/out").count == 1, "\(daemon.log)")
    }

    @Test func tlsWithSelfSignedCAAndPassword() throws {
        let dir = Fixture.tempDir()
        let sh = """
        set -e
        cd \(dir)
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem 2>/dev/null
        touch passwd && mosquitto_passwd -b passwd daemon s3cret-pw
        printf 's3cret-pw\\n' > pw.txt
        """
        Fixture.write(dir + "/mk.sh", sh)
        try #require(Fixture.run(["sh", dir + "/mk.sh"]) == 0)
        let broker = try Broker(extra: """
        cafile \(dir)/ca.pem
        certfile \(dir)/server.pem
        keyfile \(dir)/server.key
        password_file \(dir)/passwd
        """, anonymous: false)
        let tls = MQTTTLSOptions(caFile: dir + "/ca.pem")
        let observer = try Observer(port: broker.port, topics: ["home/+/door/decision"], tls: tls, username: "daemon", password: "s3cret-pw")
        let mqtt = """
          username: daemon
          password_file: \(dir)/pw.txt
          tls: {ca_file: \(dir)/ca.pem}
        """
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, mqtt: mqtt))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to home/+/door"), "\(daemon.log)")
        Fixture.run(["mosquitto_pub", "-h", "localhost", "-p", "\(broker.port)", "--cafile", dir + "/ca.pem", "-u", "daemon",
                     "-P", "s3cret-pw", "-t", "home/tls/door", "-m", #"{"state":"open"}"#, "-q", "1"])
        #expect(observer.wait(for: 1, on: "home/tls/door/decision").count == 1, "\(daemon.log)")
        #expect(!daemon.log.contains("s3cret-pw"))

        // A wrong password is refused and reported (and still not logged).
        Fixture.write(dir + "/bad.txt", "wrong-pw\n")
        let bad = DaemonProcess(config: daemonConfig(port: broker.port, mqtt: mqtt.replacingOccurrences(of: "pw.txt", with: "bad.txt")))
        defer { bad.stop() }
        #expect(bad.waitForLog("refused the connection"), "\(bad.log)")
        #expect(!bad.log.contains("wrong-pw"))
    }

    @Test func mqtt311Works() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["home/+/door/decision"])
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, mqtt: "  protocol: 3.1.1"))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to home/+/door"))
        mqttPublish(port: broker.port, topic: "home/old/door", message: #"{"state":"open"}"#)
        #expect(observer.wait(for: 1, on: "home/old/door/decision").count == 1, "\(daemon.log)")
    }

    @Test func aRouteDoesNotConsumeItsOwnOutput() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["loop/#"])
        let routes = """
        routes:
          - name: loop
            topic: loop/#
            prompt: "{{topic.1}}:"
            labels: [a, b]
            output: {topic: "loop/out/{{topic.1}}"}
        """
        // Decisions must fit the payload limit, or the loop would end in an oversize error.
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes)
            .replacingOccurrences(of: "max_payload_bytes: 256", with: "max_payload_bytes: 4096"))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to loop/#"))
        mqttPublish(port: broker.port, topic: "loop/x", message: #"{"v":1}"#)
        #expect(observer.wait(for: 1, on: "loop/out/x").count == 1)
        usleep(500_000)
        #expect(observer.messages.map(\.topic) == ["loop/x", "loop/out/x"], "\(daemon.log)")
    }

    @Test func statsArePublishedRetained() throws {
        let broker = try Broker()
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, statsInterval: 1))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("connected to 127.0.0.1"))
        mqttPublish(port: broker.port, topic: "home/s/door", message: #"{"state":"open"}"#)
        usleep(1_500_000)
        let observer = try Observer(port: broker.port, topics: ["bitnetd/stats"])
        let stats = observer.wait(for: 1, on: "bitnetd/stats")
        try #require(stats.count >= 1)
        #expect(stats[0].retain)
        #expect(keysInOrder(stats[0]) == ["schema", "uptime_s", "received", "decided", "errors", "dropped", "queue", "latency_ms", "tokens_per_s", "rss_bytes",
                                             "dropped_readings", "suppressed_errors", "outbox", "models", "kernel"])
        #expect((stats[0].json["rss_bytes"] as? Int ?? 0) > 1_000_000)
    }
}
