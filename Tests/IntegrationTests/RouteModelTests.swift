import Foundation
import Glibc
import Testing
import TestKit

/// `routes[].model`: a route served by its own model file next to the main model — loaded once at
/// start-up, named in decisions and stats, changed only by a restart.
@Suite(.serialized) struct RouteModelTests {
    /// The committed demo model (a trained decision model, a different file and name from the
    /// generated main model).
    static let demoModel = TestKit.demoModel

    static let greenhousePrompt = "greenhouse: temperature {{temperature}} C, humidity {{humidity}} %, soil {{soil}} %, light {{light}} klux. action: "

    func routes(greenhouseModel: String) -> String {
        """
        routes:
          - name: door
            topic: home/+/door
            prompt: "The {{topic.1}} door is {{state}}. Answer:"
            labels: [ok, alert]
          - name: greenhouse
            topic: gh/+
            prompt: "\(Self.greenhousePrompt)"
            labels: [water, ventilate, heat, nothing]
            model: \(greenhouseModel)
        """
    }

    /// The demo model copied beside the config, so the route can name it relatively.
    func setUp() -> (dir: String, port: Int, broker: Broker)? {
        guard let broker = try? Broker() else { return nil }
        let dir = Fixture.tempDir()
        mkdir(dir + "/models", 0o755)
        try? FileManager.default.copyItem(atPath: Self.demoModel, toPath: dir + "/models/gh.gguf")
        return (dir, broker.port, broker)
    }

    @Test func aRouteRunsOnItsOwnModel() throws {
        let (dir, port, broker) = try #require(setUp())
        _ = broker
        let observer = try Observer(port: port, topics: ["#"])
        let daemon = DaemonProcess(config: daemonConfig(port: port, routes: routes(greenhouseModel: "models/gh.gguf"), statsInterval: 1),
                                   dir: dir)
        defer { daemon.stop() }
        #expect(observer.wait(for: 1, on: "bitnetd/status").last?.text == "online", "\(daemon.log)")
        #expect(daemon.log.contains("route model bitnetd-demo (\(dir)/models/gh.gguf"), "\(daemon.log)")
        #expect(daemon.log.contains("memory: models (2)"), "\(daemon.log)")

        let reading = #"{"temperature":34,"humidity":30,"soil":12,"light":900}"#
        mqttPublish(port: port, topic: "gh/1", message: reading)
        mqttPublish(port: port, topic: "home/front/door", message: #"{"state":"open"}"#)
        let gh = try #require(observer.wait(for: 1, on: "bitnetd/decision/greenhouse").first, "\(daemon.log)")
        let door = try #require(observer.wait(for: 1, on: "bitnetd/decision/door").first, "\(daemon.log)")
        #expect(gh.json["model"] as? String == "bitnetd-demo")
        #expect(door.json["model"] as? String == "bitnetd-random")

        // The same prompt through `bitnetd decide` on the demo model: the same distribution.
        let prompt = "greenhouse: temperature 34 C, humidity 30 %, soil 12 %, light 900 klux. action: "
        let out = dir + "/decide.json"
        #expect(Fixture.run([Fixture.binary, "decide", "--model", Self.demoModel, "--threads", "1", "--labels", "water,ventilate,heat,nothing",
                             "--prompt", prompt, "--json"], output: out) == 0)
        let direct = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any]
        let want = direct?["probabilities"] as? [String: Double] ?? [:]
        let got = gh.json["probabilities"] as? [String: Double] ?? [:]
        #expect(Set(got.keys) == Set(want.keys) && want.count == 4)
        for (k, v) in want { #expect(abs((got[k] ?? -1) - v) < 1e-4, "\(k): \(got) vs \(want)") }
        #expect(gh.json["label"] as? String == direct?["label"] as? String)

        // Stats name each model and the routes it serves.
        let stats = try #require(observer.wait(for: 1, on: "bitnetd/stats").last)
        let models = stats.json["models"] as? [[String: Any]] ?? []
        #expect(models.count == 2, "\(stats.text)")
        #expect(models.first?["name"] as? String == "bitnetd-random" && models.first?["routes"] as? [String] == ["door"])
        #expect(models.last?["name"] as? String == "bitnetd-demo" && models.last?["path"] as? String == "\(dir)/models/gh.gguf"
                && models.last?["routes"] as? [String] == ["greenhouse"], "\(stats.text)")

        // SIGHUP: a route naming a file that is not loaded → refused, the running config kept.
        daemon.rewriteConfig(daemonConfig(port: port, routes: routes(greenhouseModel: "models/other.gguf"), statsInterval: 1))
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("routes.greenhouse.model: '\(dir)/models/other.gguf' is not loaded"), "\(daemon.log)")
        observer.clear()
        mqttPublish(port: port, topic: "gh/2", message: reading)
        #expect(observer.wait(for: 1, on: "bitnetd/decision/greenhouse").first?.json["model"] as? String == "bitnetd-demo", "\(daemon.log)")

        // SIGHUP: the route switches to the main model (always loaded) → applied.
        daemon.rewriteConfig(daemonConfig(port: port, routes: routes(greenhouseModel: Fixture.model), statsInterval: 1))
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("SIGHUP: configuration reloaded"), "\(daemon.log)")
        observer.clear()
        mqttPublish(port: port, topic: "gh/3", message: reading)
        #expect(observer.wait(for: 1, on: "bitnetd/decision/greenhouse").first?.json["model"] as? String == "bitnetd-random", "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }

    @Test func aMissingRouteModelIsReportedWithItsPosition() throws {
        let (dir, port, broker) = try #require(setUp())
        _ = broker
        let config = dir + "/bitnetd.yaml"
        Fixture.write(config, daemonConfig(port: port, routes: routes(greenhouseModel: "models/missing.gguf")))
        let out = dir + "/check.txt"
        #expect(Fixture.run([Fixture.binary, "check-config", "--config", config], output: out) == 1)
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(text.range(of: #"bitnetd\.yaml:\d+:\d+: routes\.greenhouse\.model: cannot use '.*/models/missing\.gguf'"#, options: .regularExpression) != nil, "\(text)")
        // The daemon refuses to start (exit 3: a model cannot be used), naming the file.
        let daemon = DaemonProcess(config: daemonConfig(port: port, routes: routes(greenhouseModel: "models/missing.gguf")), dir: dir)
        #expect(daemon.child?.wait(timeoutS: 30) == 3)
        #expect(daemon.log.contains("cannot load model \(dir)/models/missing.gguf"), "\(daemon.log)")
        // A good one passes check-config and says so.
        Fixture.write(config, daemonConfig(port: port, routes: routes(greenhouseModel: "models/gh.gguf")))
        #expect(Fixture.run([Fixture.binary, "check-config", "--config", config], output: out) == 0)
        #expect(((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("1 route model"))
    }
}
