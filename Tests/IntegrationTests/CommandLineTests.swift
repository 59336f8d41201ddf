import Foundation
import Glibc
import Mosquitto
import Testing
import TestKit

/// The built binary's subcommands, end to end.
@Suite struct CommandLineTests {
    func checkConfig(_ yaml: String?, path: String? = nil) -> (Int32, String) {
        let dir = Fixture.tempDir()
        let file = path ?? dir + "/bitnetd.yaml"
        if let yaml { Fixture.write(file, yaml) }
        let out = dir + "/out.txt"
        let rc = Fixture.run([Fixture.binary, "check-config", "--config", file], output: out)
        return (rc, ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").replacingOccurrences(of: dir + "/", with: ""))
    }

    /// `bench --decide`, in process and end to end through a real broker and `bitnetd run`:
    /// every variant reports (the figures themselves are for notes, not for assertions).
    @Test func benchDecideInProcessAndOverMQTT() throws {
        let dir = Fixture.tempDir()
        func bench(_ extra: [String]) throws -> [[String: Any]] {
            let out = dir + "/bench-\(extra.count).json"
            let rc = Fixture.run([Fixture.binary, "bench", "--decide", "--model", Fixture.model, "--threads", "1",
                                  "--decisions", "6", "--decide-batch", "3", "--decide-prompt", "40", "--decide-constant", "24",
                                  "--json"] + extra, output: out)
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            #expect(rc == 0, "\(text)")
            // One document (docs/bench.md): {"schema": 1, "kind": "decide", …, "results": [ … ]}.
            let line = text.split(separator: "\n").first { $0.hasPrefix("{\"schema\"") } ?? ""
            let doc = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(doc?["schema"] as? Int == 1 && doc?["kind"] as? String == "decide" && (doc?["cpus"] as? Int ?? 0) >= 1)
            return (doc?["results"] as? [[String: Any]]) ?? []
        }
        let rows = try bench([])
        #expect(rows.map { $0["variant"] as? String ?? "" } == [
            "full recompute, full LM head", "label-only LM head", "prefix cache", "prefix cache + label-only",
            "prefix cache + label-only, batches of 3"])
        for r in rows { #expect((r["p50_ms"] as? Double ?? 0) > 0 && (r["decisions_per_s"] as? Double ?? 0) > 0) }
        #expect((rows[3]["cached_tokens"] as? Int ?? 0) >= 24)

        let broker = try Broker()
        let e2e = try bench(["--mqtt", "127.0.0.1:\(broker.port)"])
        #expect(e2e.map { $0["variant"] as? String ?? "" } == ["MQTT round trip, one at a time", "MQTT burst of 6, batch_max 3"])
        for r in e2e {
            #expect((r["p50_ms"] as? Double ?? 0) > 0)
            #expect((r["daemon_p50_ms"] as? Double ?? 0) > 0, "the decision documents carry the daemon's latency")
        }
    }

    @Test func checkConfigExitCodes() {
        let good = daemonConfig(port: 1883)
        let (ok, okText) = checkConfig(good)
        #expect(ok == 0, "\(okText)")
        #expect(okText.contains("OK (2 routes, 0 plugins)"))

        let (bad, badText) = checkConfig(good.replacingOccurrences(of: "  port: 1883", with: "  port: 0\n  hots: x"))
        #expect(bad == 1)
        #expect(badText.contains("bitnetd.yaml:7:9: mqtt.port: expected 1...65535, got 0"), "\(badText)")
        #expect(badText.contains("bitnetd.yaml:8:3: mqtt.hots: unknown key 'hots'; did you mean 'host'?"), "\(badText)")

        let (noModel, noModelText) = checkConfig(good.replacingOccurrences(of: Fixture.model, with: "/nonexistent/m.gguf"))
        #expect(noModel == 1)
        #expect(noModelText.contains("bitnetd.yaml:2:9: model.path: cannot use '/nonexistent/m.gguf'"), "\(noModelText)")

        let notGGUF = Fixture.tempDir() + "/x.gguf"
        Fixture.write(notGGUF, "definitely not a model")
        let (garbage, _) = checkConfig(good.replacingOccurrences(of: Fixture.model, with: notGGUF))
        #expect(garbage == 1)

        let (files, filesText) = checkConfig(good.replacingOccurrences(of: Fixture.model, with: "/nonexistent/m.gguf")
            .replacingOccurrences(of: "  port: 1883", with: "  port: 1883\n  password_file: /nonexistent/pw\n  tls: {ca_file: /nonexistent/ca.pem}"))
        #expect(files == 1)
        #expect(filesText.contains("bitnetd.yaml:2:9: model.path: cannot use"), "\(filesText)")
        #expect(filesText.contains("bitnetd.yaml:8:18: mqtt.password_file: cannot read '/nonexistent/pw': No such file or directory"), "\(filesText)")
        #expect(filesText.contains("bitnetd.yaml:9:18: mqtt.tls.ca_file: cannot read '/nonexistent/ca.pem'"), "\(filesText)")
        #expect(filesText.contains("3 errors"), "\(filesText)")

        let (unreadable, _) = checkConfig(nil, path: "/nonexistent/bitnetd.yaml")
        #expect(unreadable == 2)
    }

    @Test func sha256IsVerifiedAtStartUp() throws {
        let broker = try Broker()
        let wrong = DaemonProcess(config: daemonConfig(port: broker.port).replacingOccurrences(
            of: "  context: 256", with: "  context: 256\n  sha256: \(String(repeating: "0", count: 64))"))
        #expect(wrong.child?.wait(timeoutS: 20) == 1)
        #expect(wrong.log.contains("SHA-256 is "), "\(wrong.log)")

        let out = Fixture.tempDir() + "/sum"
        Fixture.run(["sh", "-c", "sha256sum \(Fixture.model) | cut -d' ' -f1 > \(out)"])
        let sum = try String(contentsOfFile: out, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let right = DaemonProcess(config: daemonConfig(port: broker.port).replacingOccurrences(
            of: "  context: 256", with: "  context: 256\n  sha256: \(sum.uppercased())"))
        defer { right.stop() }
        #expect(right.waitForLog("model SHA-256 verified"), "\(right.log)")
    }

    @Test func sighupAppliesNewMQTTSettings() throws {
        let first = try Broker()
        let second = try Broker()
        let observer = try Observer(port: second.port, topics: ["home/+/door/decision"])
        let config = daemonConfig(port: first.port, clientID: "moving-\(first.port)")
        let daemon = DaemonProcess(config: config)
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to home/+/door"))
        daemon.rewriteConfig(config.replacingOccurrences(of: "port: \(first.port)", with: "port: \(second.port)"))
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("connected to 127.0.0.1:\(second.port)"), "\(daemon.log)")
        _ = poll(timeoutS: 5) { daemon.log.components(separatedBy: "subscribed to home/+/door").count > 2 }
        mqttPublish(port: second.port, topic: "home/moved/door", message: #"{"state":"open"}"#)
        #expect(observer.wait(for: 1, on: "home/moved/door/decision").count == 1, "\(daemon.log)")
    }
}
