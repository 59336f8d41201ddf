import Foundation
import Glibc
import Mosquitto
import Testing
import TestKit

/// Sensor plugins inside the daemon (issue 6) and Home Assistant discovery (issue 8 item 4), end
/// to end with a real mosquitto and the built binary.

/// An executable shell script in `dir`.
func writeScript(_ dir: String, _ name: String, _ body: String) -> String {
    let path = dir + "/" + name
    Fixture.write(path, "#!/bin/sh\n" + body)
    chmod(path, 0o755)
    return path
}

// Nested in the serialized EndToEndTests so that these blocking tests never run beside the other
// end-to-end tests: on a 2-core machine two suites blocking both cooperative threads starve the
// async plugin tests' polling (seen as a flaky ExecPluginTests timing).
extension EndToEndTests {
    @Suite(.serialized) struct PluginIntegrationTests {
        @Test func execReadingsDriveAWindowedDecideRoute() throws {
            let broker = try Broker()
            let observer = try Observer(port: broker.port, topics: ["#"])
            let dir = Fixture.tempDir()
            let script = writeScript(dir, "probe.sh", """
            sleep 0.5
            for t in 20 21 22 30 31 32 33 34; do echo "{\\"topic\\": \\"bed1\\", \\"fields\\": {\\"temp_c\\": $t}}"; sleep 0.2; done
            exec sleep 600

            """)
            let routes = """
            plugins:
              - id: exec
                name: probe
                command: [\(script)]
                stop_grace_s: 1
            routes:
              - name: greenhouse
                topic: bitnetd/sensors/probe/+
                input: plugin
                window: {count: 3}
                prompt: "Bed {{topic.3}}: mean {{window.mean.temp_c}} C, max {{window.max.temp_c}} C, last {{window.last.temp_c}} C over {{window.count}} readings. Answer:"
                labels: [ok, hot]
                output: {topic: "greenhouse/{{topic.3}}/decision"}
              - name: calm
                topic: bitnetd/sensors/probe/#
                input: plugin
                window: {span_s: 60}
                debounce: {on_change: true}
                prompt: "Temperature {{temp_c}}, {{window.count}} readings. Answer:"
                labels: [ok, hot]
            """
            let daemon = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes))
            defer { daemon.stop() }

            // Readings are published under <prefix>/sensors/<name>/<suffix> with a timestamp.
            let readings = observer.wait(for: 8, on: "bitnetd/sensors/probe/bed1")
            try #require(readings.count == 8, "\(daemon.log)")
            #expect(readings.map { $0.json["temp_c"] as? Int } == [20, 21, 22, 30, 31, 32, 33, 34])
            #expect((readings[0].json["ts"] as? String)?.hasSuffix("Z") == true)

            // Every reading gives one decision of the windowed route, rendered from the window.
            let decisions = observer.wait(for: 8, on: "greenhouse/bed1/decision")
            try #require(decisions.count == 8, "\(daemon.log)")
            #expect(keysInOrder(decisions[0]) == decisionKeys)
            #expect(decisions.allSatisfy { $0.json["route"] as? String == "greenhouse" })
            #expect(decisions[0].json["input_topic"] as? String == "bitnetd/sensors/probe/bed1")
            #expect(decisions.allSatisfy { ["ok", "hot"].contains($0.json["label"] as? String ?? "") })
            // The prompt the window produced is in the debug log (mean of 30, 31, 32 = 31).
            #expect(daemon.waitForLog("route greenhouse"), "\(daemon.log)")

            // The debounced route publishes only changes: consecutive labels differ.
            usleep(1_000_000)
            let calm = observer.messages(on: "bitnetd/decision/calm").compactMap { $0.json["label"] as? String }
            #expect(!calm.isEmpty && calm.count <= 8, "\(calm)")
            #expect(zip(calm, calm.dropFirst()).allSatisfy { $0 != $1 }, "\(calm)")
            #expect(daemon.stop() == 0)
            #expect(daemon.log.contains("plugins stopped (1)"), "\(daemon.log)")
        }

        @Test func crashingExecPluginIsReportedWhileMQTTRoutesKeepAnswering() throws {
            let broker = try Broker()
            let observer = try Observer(port: broker.port, topics: ["bitnetd/error", "home/+/door/decision", "bitnetd/status"])
            let dir = Fixture.tempDir()
            let script = writeScript(dir, "crash.sh", """
            echo '{"x": 1}'
            echo 'this is not json'
            exit 3

            """)
            let config = daemonConfig(port: broker.port, extra: """
            plugins:
              - id: exec
                name: crasher
                command: [\(script)]
                restart_min_s: 1
                restart_max_s: 2
            """)
            let daemon = DaemonProcess(config: config)
            defer { daemon.stop() }
            #expect(observer.wait(for: 1, on: "bitnetd/status").last?.text == "online")

            let errors = observer.wait(for: 2, on: "bitnetd/error")
            try #require(errors.count >= 2, "\(daemon.log)")
            let codes = Set(errors.compactMap { $0.json["error"] as? String })
            #expect(codes.contains("bad_line"), "\(codes)")
            #expect(codes.contains("exited") || observer.wait(for: 3, on: "bitnetd/error").contains { $0.json["error"] as? String == "exited" })
            #expect(keysInOrder(errors[0]) == errorKeys)
            #expect(errors[0].json["route"] is NSNull)
            #expect(errors[0].json["input_topic"] as? String == "bitnetd/sensors/crasher")
            #expect((errors[0].json["detail"] as? String)?.hasPrefix("plugin crasher: ") == true)
            #expect(daemon.log.contains("warning bitnetd: plugin crasher (exec): bad_line"), "\(daemon.log)")

            // MQTT routes keep answering while the plugin crashes and restarts.
            for i in 0..<3 {
                mqttPublish(port: broker.port, topic: "home/r\(i)/door", message: #"{"state":"open"}"#)
                #expect(observer.wait(for: 1, on: "home/r\(i)/door/decision").count == 1, "\(daemon.log)")
                usleep(500_000)
            }
            // It was restarted; its problems are reported once per (plugin, code) a minute, so
            // the repeated exits and bad lines are counted, not published again.
            #expect(poll(timeoutS: 10) { daemon.log.components(separatedBy: "plugin crasher: started pid").count >= 3 }, "\(daemon.log)")
            #expect(observer.messages(on: "bitnetd/error").filter { $0.json["error"] as? String == "exited" }.count == 1, "\(daemon.log)")
            #expect(observer.messages(on: "bitnetd/error").filter { $0.json["error"] as? String == "bad_line" }.count == 1, "\(daemon.log)")
            #expect(daemon.stop() == 0)
        }

        @Test func checkConfigReportsPluginProblemsWithPositions() {
            let dir = Fixture.tempDir()
            let config = daemonConfig(port: 1883, routes: """
            plugins:
              - id: system
                intervl_s: 5
              - id: linux-thermul
            routes:
              - name: w
                topic: x/y
                prompt: "{{window.mean.t}} Answer:"
                labels: [a, b]
            """)
            Fixture.write(dir + "/bitnetd.yaml", config)
            let lines = config.split(separator: "\n", omittingEmptySubsequences: false)
            let keyLine = lines.firstIndex { $0.contains("intervl_s") }! + 1
            let idLine = lines.firstIndex { $0.contains("linux-thermul") }! + 1
            let out = dir + "/out.txt"
            let rc = Fixture.run([Fixture.binary, "check-config", "--config", dir + "/bitnetd.yaml"], output: out)
            let text = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").replacingOccurrences(of: dir + "/", with: "")
            #expect(rc == 1)
            // The template problem is found while reading the file (before plugins are built).
            #expect(text.contains("prompt: {{window.…}} needs a reading window"), "\(text)")

            // With the route fixed, the plugin problems are reported with file:line:col.
            Fixture.write(dir + "/bitnetd.yaml", config.replacingOccurrences(of: "{{window.mean.t}}", with: "{{t}}"))
            let rc2 = Fixture.run([Fixture.binary, "check-config", "--config", dir + "/bitnetd.yaml"], output: out + "2")
            let text2 = ((try? String(contentsOfFile: out + "2", encoding: .utf8)) ?? "").replacingOccurrences(of: dir + "/", with: "")
            #expect(rc2 == 1)
            #expect(text2.contains("bitnetd.yaml:\(keyLine):5: plugins[0].intervl_s: unknown key 'intervl_s'; did you mean 'interval_s'?"), "\(text2)")
            #expect(text2.contains("bitnetd.yaml:\(idLine):9: plugins[1].id: unknown plugin 'linux-thermul'; did you mean 'linux-thermal'?"), "\(text2)")

            // The daemon refuses to start with the same messages.
            let daemon = DaemonProcess(config: config.replacingOccurrences(of: "{{window.mean.t}}", with: "{{t}}"), dir: dir)
            #expect(daemon.child?.wait(timeoutS: 30) == 1)
            #expect(daemon.log.contains("plugins[0].intervl_s: unknown key"), "\(daemon.log)")
        }

        @Test func homeAssistantDiscoveryIsRetainedAndRemovedOnReload() throws {
            let broker = try Broker()
            let routes = """
            homeassistant: {enabled: true, node_id: testpi}
            routes:
              - name: door
                topic: home/+/door
                prompt: "The {{topic.1}} door is {{state}}. Answer:"
                labels: [ok, alert]
                output: {topic: "home/{{topic.1}}/door/decision"}
              - name: fixed
                topic: fixed/in
                prompt: "{{state}}. Answer:"
                labels: [ok, alert]
              - name: kept
                topic: kept/in
                prompt: "{{state}}. Answer:"
                labels: [yes, no]
                output: {topic: "kept/out"}
            """
            let daemon = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes))
            defer { daemon.stop() }
            #expect(daemon.waitForLog("connected to 127.0.0.1"), "\(daemon.log)")
            usleep(500_000)

            // A client connecting later (Home Assistant) gets the retained config messages.
            let ha = try Observer(port: broker.port, topics: ["homeassistant/#"])
            let configs = ha.wait(for: 2, on: nil, timeoutS: 10)
            let byTopic = Dictionary(configs.map { ($0.topic, $0) }, uniquingKeysWith: { $1 })
            #expect(Set(byTopic.keys) == ["homeassistant/sensor/testpi/fixed/config", "homeassistant/sensor/testpi/kept/config"],
                    "\(byTopic.keys) \(daemon.log)")
            let fixed = try #require(byTopic["homeassistant/sensor/testpi/fixed/config"])
            #expect(fixed.retain)
            let j = fixed.json
            #expect(j["name"] as? String == "fixed")
            #expect(j["unique_id"] as? String == "bitnetd_testpi_fixed")
            #expect(j["state_topic"] as? String == "bitnetd/decision/fixed")
            #expect(j["value_template"] as? String == "{{ value_json.label }}")
            #expect(j["json_attributes_topic"] as? String == "bitnetd/decision/fixed")
            #expect(j["availability_topic"] as? String == "bitnetd/status")
            #expect(j["payload_available"] as? String == "online")
            #expect(j["payload_not_available"] as? String == "offline")
            let device = j["device"] as? [String: Any] ?? [:]
            #expect(device["identifiers"] as? [String] == ["bitnetd_testpi"])
            #expect(device["model"] as? String == "bitnetd-random")
            #expect(device["sw_version"] is String)
            #expect(daemon.log.contains("route door not announced"), "\(daemon.log)")

            // A reload with a bad plugin entry keeps the running configuration (and announces nothing new).
            daemon.rewriteConfig(daemonConfig(port: broker.port, routes: routes, extra: "plugins:\n  - {id: system, bogus: 1}"))
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("plugin error(s); keeping the running one"), "\(daemon.log)")
            #expect(daemon.log.contains("plugins[0].bogus: unknown key 'bogus'"), "\(daemon.log)")

            // The route disappears on SIGHUP: its config is cleared (empty retained message).
            ha.clear()
            daemon.rewriteConfig(daemonConfig(port: broker.port, routes: routes.replacingOccurrences(of: """
              - name: fixed
                topic: fixed/in
                prompt: "{{state}}. Answer:"
                labels: [ok, alert]

            """, with: "")))
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("SIGHUP: configuration reloaded"), "\(daemon.log)")
            let removed = ha.wait(for: 1, on: "homeassistant/sensor/testpi/fixed/config", timeoutS: 10)
            try #require(removed.count == 1, "\(daemon.log)")
            #expect(removed[0].payload.isEmpty)

            // A fresh subscriber sees only the remaining route.
            usleep(300_000)
            let late = try Observer(port: broker.port, topics: ["homeassistant/#"])
            usleep(500_000)
            #expect(Set(late.messages.map(\.topic)) == ["homeassistant/sensor/testpi/kept/config"])
            #expect(daemon.stop() == 0)
        }

        /// Figures for the issue note (not asserted): CPU and RSS of the daemon over ~30 s with all
        /// built-ins at 1 s intervals, and without plugins. BITNETD_MEASURE=1 (and a release binary
        /// via BITNETD_BIN) to run it.
        @Test(.enabled(if: ProcessInfo.processInfo.environment["BITNETD_MEASURE"] == "1"))
        func pluginOverhead() throws {
            let seconds = Double(ProcessInfo.processInfo.environment["BITNETD_MEASURE_S"] ?? "30") ?? 30
            let dir = Fixture.tempDir()
            let logFile = dir + "/tail.log"
            Fixture.write(logFile, "")
            let plugins = """
            plugins:
              - {id: system, interval_s: 1}
              - {id: linux-thermal, interval_s: 1}
              - {id: file-tail, path: \(logFile), interval_s: 1}
            """
            for (label, extra) in [("none", ""), ("builtins", plugins)] {
                let broker = try Broker()
                let daemon = DaemonProcess(config: daemonConfig(port: broker.port, extra: extra)
                    .replacingOccurrences(of: "level: debug", with: "level: info"))
                defer { daemon.stop() }
                #expect(daemon.waitForLog("connected to 127.0.0.1"))
                usleep(2_000_000)
                let pid = daemon.child!.pid
                let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
                func cpuTicks() -> Double {
                    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
                    let after = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
                    return Double(after[11])! + Double(after[12])! // utime, stime (fields 14, 15)
                }
                func rssKB() -> Int {
                    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                    let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS") } ?? ""
                    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
                }
                let t0 = Date(), c0 = cpuTicks()
                var maxRSS = 0
                while Date().timeIntervalSince(t0) < seconds {
                    Fixture.write(logFile, "") // keep the file small; file-tail handles truncation
                    usleep(1_000_000)
                    maxRSS = max(maxRSS, rssKB())
                }
                let cpu = (cpuTicks() - c0) / hz
                let wall = Date().timeIntervalSince(t0)
                print("MEASURE plugins=\(label) binary=\(Fixture.binary) wall_s=\(String(format: "%.1f", wall)) cpu_s=\(String(format: "%.2f", cpu)) cpu_percent=\(String(format: "%.3f", 100 * cpu / wall)) rss_kb=\(rssKB()) max_rss_kb=\(maxRSS)")
                #expect(daemon.stop() == 0)
            }
        }
    }
}
