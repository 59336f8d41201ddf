import Foundation
import JSONValue
import Platform
import PluginExec
import SensorPlugins
import Synchronization
import Testing
import TestKit

/// Exec plugins under a real `PluginHost`, with small shell scripts written into a temp folder.
/// Timeouts are generous upper bounds for a loaded 2-core machine; the tests poll, they do not sleep.
@Suite struct ExecPluginTests {
    func plugin(_ dir: TempDir, script: String, name: String = "sensor", restartMin: Double = 0.1,
                restartMax: Double = 0.4, grace: Double = 0.5, environment: [String]? = nil,
                workingDirectory: String? = nil) throws -> ExecPlugin {
        // Run through /bin/sh rather than exec'ing the file: a script written just now can be held
        // open for writing by a child another test is spawning at that moment (ETXTBSY).
        dir.write("\(name).sh", script + "\n")
        var options = ExecPlugin.Options(command: ["/bin/sh", dir.file("\(name).sh")],
                                         environment: environment ?? currentEnvironment(), workingDirectory: workingDirectory)
        options.restartMin = restartMin
        options.restartMax = restartMax
        options.stopGrace = grace
        return ExecPlugin(settings: PluginSettings(id: "exec", name: name), options: options)
    }

    @Test func goodAndBadLinesThenSilence() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: """
            echo '{"topic": "bme280", "fields": {"temperature_c": 21.5, "ok": true}, "ts": 1764427200}'
            echo 'not json at all'
            echo '{"humidity_percent": 40}'
            echo '{"topic": "a/+", "fields": {"x": 1}}'
            echo
            echo 'warming up' >&2
            exec sleep 1000
            """)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { rec.readings.count == 2 && rec.errors.count == 2 && rec.logs.contains { $0.contains("stderr") } })
        #expect(rec.readings[0] == Reading(topicSuffix: "bme280", fields: ["temperature_c": 21.5, "ok": true], timestamp: 1_764_427_200))
        #expect(rec.readings[1].topicSuffix == "")
        #expect(rec.readings[1].fields == ["humidity_percent": 40])
        #expect(abs(rec.readings[1].timestamp - wallClock()) < 30)
        #expect(rec.errors.map(\.description) == [
            "bad_line: stdout line 2: not JSON: invalid literal at byte 0: 'not json at all'",
            "bad_line: stdout line 4: 'topic': a topic suffix cannot contain '+' or '#', got 'a/+': '{\"topic\": \"a/+\", \"fields\": {\"x\": 1}}'",
        ])
        #expect(rec.logs.contains("plugin sensor: stderr: warming up"))
        // Silent now (sleeping): nothing more arrives, and stop() ends it with SIGTERM — the 5 s
        // grace after which SIGKILL would be sent is never reached (said by the log, not a clock).
        host.stop()
        #expect(!rec.logs.contains { $0.contains("did not stop within") })
        #expect(rec.logs.contains { $0.hasPrefix("plugin sensor: pid ") && $0.hasSuffix("was killed by signal 15 (SIGTERM) on stop") })
    }

    @Test func crashesAreReportedAndRestartedWithExponentialBackoff() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "echo '{\"n\": 1}'\nexit 3", restartMin: 0.1, restartMax: 0.4)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 15) { rec.errors.count >= 5 })
        host.stop()
        let exits = rec.entries.filter { $0.error != nil }
        let messages = exits.map { $0.error!.message }
        #expect(exits.allSatisfy { $0.error!.code == "exited" })
        #expect(messages.allSatisfy { $0.contains("exited with status 3 after") })
        #expect(Array(messages.prefix(5).map { $0.split(separator: ";").last! }) == [
            " restarting in 0.1 s", " restarting in 0.2 s", " restarting in 0.4 s", " restarting in 0.4 s", " restarting in 0.4 s",
        ])
        // The next exit cannot come before the announced delay has passed.
        for (k, delay) in [0.1, 0.2, 0.4, 0.4].enumerated() {
            #expect(exits[k + 1].time - exits[k].time >= delay - 0.01)
        }
        // Each run printed its reading before crashing.
        #expect(rec.readings.count >= 5)
        #expect(rec.logs.filter { $0.contains("started pid") }.count >= 5)
    }

    @Test func aRunLongerThanTheMaximumDelayResetsTheBackoff() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "sleep 0.4\nexit 0", restartMin: 0.05, restartMax: 0.2)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 15) { rec.errors.count >= 3 })
        host.stop()
        #expect(rec.errors.prefix(3).allSatisfy { $0.message.hasSuffix("restarting in 0.05 s") })
    }

    @Test func killedBySignalAndFinalLineWithoutNewline() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "printf '{\"last\": true}'\nkill -SEGV $$", restartMin: 60, restartMax: 60)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { !rec.errors.isEmpty })
        host.stop()
        #expect(rec.readings.map(\.fields) == [["last": true]], "\(rec.errors) \(rec.logs)")
        #expect(rec.errors.count == 1)
        #expect(rec.errors.first?.message.contains("was killed by signal 11 (SIGSEGV) after") == true)
        #expect(rec.errors.first?.message.hasSuffix("restarting in 60 s") == true)
    }

    @Test func stopKillsAChildThatIgnoresSIGTERMWithinTheGracePeriod() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: """
            trap '' TERM
            echo "{\\"pid\\": $$}"
            sleep 1000 &
            echo "{\\"child\\": $!}"
            while :; do sleep 1; done
            """, grace: 0.5)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { rec.readings.count == 2 })
        let pids = rec.readings.compactMap { r -> pid_t? in
            if case .number(let d) = r.fields["pid"] ?? r.fields["child"] { return pid_t(d) }
            return nil
        }
        #expect(pids.count == 2)
        #expect(pids.allSatisfy(isRunning))
        let t0 = monotonicSeconds()
        host.stop()
        // The grace was honoured (a lower bound holds on any CPU); that stop() then ended it is
        // said by the SIGKILL log line and the processes being gone, not by an upper time bound.
        #expect(monotonicSeconds() - t0 >= 0.45)
        #expect(rec.logs.contains { $0.contains("did not stop within 0.5 s; sending SIGKILL") })
        // The script and its background child (same process group) are gone.
        #expect(await poll(timeout: 5) { !pids.contains(where: isRunning) })
        #expect(rec.errors.isEmpty)
    }

    @Test func leftoverChildrenOfACrashedPluginAreKilled() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "sleep 1000 &\necho \"{\\\"child\\\": $!}\"\nexit 1", restartMin: 10, restartMax: 10)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        // At least one crash (a slow machine may already be past the 10 s restart delay).
        #expect(await poll(timeout: 10) { rec.errors.count >= 1 && rec.readings.count >= 1 })
        guard case .number(let d) = rec.readings.first?.fields["child"] else { Issue.record("no child pid"); return }
        #expect(await poll(timeout: 5) { !isRunning(pid_t(d)) })
        host.stop()
    }

    /// `setsid` takes a descendant out of the plugin's process group, so the group kill misses
    /// it; it still carries the plugin's process-tree mark and goes with the plugin.
    @Test func descendantsThatCallSetsidEndWithThePlugin() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "setsid sleep 1000 &\necho \"{\\\"child\\\": $!}\"\nexec sleep 1000")
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { rec.readings.count == 1 })
        guard case .number(let d) = rec.readings.first?.fields["child"] else { Issue.record("no child pid"); return }
        // It really left the group (and the session).
        let stat = (try? String(contentsOfFile: "/proc/\(Int(d))/stat", encoding: .utf8)) ?? ""
        let fields = stat[(stat.range(of: ")")?.upperBound ?? stat.startIndex)...].split(separator: " ")
        #expect(fields.count > 3 && fields[2] == fields[3] && Int(fields[2]) == Int(d), "pgrp/session of the setsid child: \(stat)")
        host.stop()
        #expect(await poll(timeout: 5) { !isRunning(pid_t(d)) })
    }

    /// A program that writes thousands of stderr lines logs a handful and one count, not a flood.
    @Test func stderrFloodsAreRateLimited() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "i=0; while [ $i -lt 3000 ]; do echo \"oops $i\" >&2; i=$((i+1)); done; exit 0",
                           restartMin: 3600, restartMax: 3600)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        let t0 = monotonicSeconds()
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 60) { rec.logs.contains { $0.contains("more lines not logged") } }, "\(rec.logs.suffix(5))")
        host.stop()
        // However long the program took, at most a burst per started window.
        let windows = Int(((monotonicSeconds() - t0) / ExecPlugin.stderrWindow).rounded(.up)) + 1
        let lines = rec.logs.filter { $0.contains("stderr: oops") }
        let counted = rec.logs.compactMap { log -> Int? in
            guard let r = log.range(of: "stderr: ") , log.contains("more lines not logged") else { return nil }
            return Int(log[r.upperBound...].prefix { $0.isNumber })
        }.reduce(0, +)
        #expect(lines.count <= windows * ExecPlugin.stderrBurst, "\(lines.count) lines logged in \(windows) windows")
        #expect(lines.count + counted == 3000, "\(lines.count) logged + \(counted) counted")
    }

    @Test func aSilentChildBlocksNothing() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let silent = try plugin(dir, script: "exec sleep 1000", name: "silent")
        let ticker = Ticker(settings: PluginSettings(id: "ticker", name: "ticker", interval: 0.05))
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [silent, ticker], onReading: rec.onReading, onError: rec.onError)
        // start() returned while the silent child runs on (it sleeps 1000 s and has not exited):
        // the ticker samples meanwhile.
        #expect(await poll(timeout: 10) { rec.readings.count >= 5 })
        #expect(!rec.errors.contains { $0.code == "exited" }, "the silent child is still running")
        #expect(rec.entries.allSatisfy { $0.plugin == "ticker" })
        host.stop()
    }

    @Test func programThatCannotStartIsRetried() async throws {
        var options = ExecPlugin.Options(command: ["/nonexistent/sensor"])
        options.restartMin = 0.05
        options.restartMax = 0.1
        let p = ExecPlugin(settings: PluginSettings(id: "exec", name: "ghost"), options: options)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { rec.errors.count >= 2 })
        host.stop()
        #expect(rec.errors[0] == PluginError("spawn_failed", "/nonexistent/sensor: cannot start: No such file or directory; retrying in 0.05 s"))
        #expect(rec.errors[1].message.hasSuffix("retrying in 0.1 s"))
    }

    @Test func environmentAndWorkingDirectory() async throws {
        let dir = TempDir("exec")
        defer { dir.remove() }
        let p = try plugin(dir, script: "echo \"{\\\"cwd\\\": \\\"$(pwd)\\\", \\\"foo\\\": \\\"$FOO\\\", \\\"home\\\": \\\"${HOME:-unset}\\\"}\"\nexec sleep 1000",
                           environment: ["FOO=bar baz", "PATH=/usr/bin:/bin"], workingDirectory: "/usr")
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { rec.readings.count == 1 })
        host.stop()
        #expect(rec.readings.first?.fields == ["cwd": "/usr", "foo": "bar baz", "home": "unset"])
    }

    @Test func childStartsWithAnEmptySignalMaskAndDefaultDispositions() throws {
        // The daemon blocks SIGTERM in its threads and a child inherits the mask: block it here too.
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &block, &old)
        let previous = signal(SIGPIPE, SIG_IGN)
        defer {
            signal(SIGPIPE, previous)
            pthread_sigmask(SIG_SETMASK, &old, nil)
        }
        let done = DispatchSemaphore(value: 0)
        let collected = Collected()
        let child = try ChildProcess.spawn(["/bin/sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status; cut -d' ' -f5 /proc/$$/stat"],
                                           environment: nil, workingDirectory: nil,
                                           onOutput: { stream, bytes in if stream == .stdout { collected.bytes.withLock { $0 += bytes } } },
                                           onExit: { _ in done.signal() })
        #expect(done.wait(timeout: .now() + 10) == .success)
        let output = collected.bytes.withLock { $0 }
        let text = String(decoding: output, as: UTF8.self)
        func mask(_ name: String) -> UInt64? {
            text.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { UInt64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) }
        }
        #expect(mask("SigBlk") == 0)
        // Standard signals 1...31 (bits 0...30); glibc's internal real-time signals are not ours.
        #expect(mask("SigIgn").map { $0 & 0x7FFF_FFFF } == 0)
        // Its own process group: pgid == pid.
        #expect(text.split(separator: "\n").last.map { $0.trimmingCharacters(in: .whitespaces) } == String(child.pid))
    }

    @Test(.enabled(if: executablePath("python3") != nil, "needs python3"))
    func theBME280ExampleRunsSimulated() async throws {
        let script = fixture("../../examples/bme280.py")
        var options = ExecPlugin.Options(command: ["python3", script, "--simulate", "--interval", "0.05"])
        options.stopGrace = 2
        let p = ExecPlugin(settings: PluginSettings(id: "exec", name: "bme280"), options: options)
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [p], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 20) { rec.readings.count >= 3 })
        host.stop()
        #expect(rec.errors.isEmpty)
        for r in rec.readings {
            #expect(r.topicSuffix == "bme280")
            #expect(r.fields.keys == ["temperature_c", "humidity_percent", "pressure_hpa", "simulated"])
            #expect(r.fields["simulated"] == true)
            if case .number(let t) = r.fields["temperature_c"] { #expect(t > 10 && t < 35) }
            if case .number(let p) = r.fields["pressure_hpa"] { #expect(p > 950 && p < 1050) }
        }
    }

    @Test func recordedBME280LinesParse() throws {
        let text = try String(contentsOfFile: fixture("bme280-simulated.jsonl"), encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 5)
        for line in lines {
            let r = try #require(try ReadingLine.parse(Array(line.utf8), format: .json, time: 1))
            #expect(r.topicSuffix == "bme280")
            #expect(r.fields["humidity_percent"] != nil)
        }
    }

    @Test func optionsFromYAML() throws {
        let registry = PluginRegistry([ExecPlugin.factory])
        let bad = try makePlugins(registry, yaml: """
            plugins:
              - id: exec
                command: [/nonexistent/bme280.py, --interval, "5"]
                interval_s: 5
                restart_min_s: 10
                restart_max_s: 2
                working_dir: /nonexistent
                environment: {A: [1]}
              - id: exec
                command: no-such-program-anywhere
              - id: exec
            """)
        #expect(bad.errors == [
            "bitnetd.yaml:3:15: plugins[0].command[0]: '/nonexistent/bme280.py' is not an executable file",
            "bitnetd.yaml:4:17: plugins[0].interval_s: 'exec' plugins push their readings and take no interval_s (the program decides when to print)",
            "bitnetd.yaml:6:20: plugins[0].restart_max_s: must be at least restart_min_s (10)",
            "bitnetd.yaml:7:18: plugins[0].working_dir: '/nonexistent' is not a directory",
            "bitnetd.yaml:8:22: plugins[0].environment.A: expected a string, got a list",
            "bitnetd.yaml:10:14: plugins[1].command[0]: 'no-such-program-anywhere' was not found in PATH (give an absolute path)",
            "bitnetd.yaml:11:5: plugins[2].command: required key is missing",
        ])
        let ok = try makePlugins(registry, yaml: """
            plugins:
              - id: exec
                name: bme
                command: [sh, -c, "echo hi"]
                environment: {FOO: bar}
                inherit_environment: false
                working_dir: /tmp
                restart_min_s: 0.5
                stop_grace_s: 3
            """)
        #expect(ok.errors == [])
        let p = try #require(ok.plugins.first as? ExecPlugin)
        #expect(p.options.command == ["sh", "-c", "echo hi"])
        #expect(p.options.environment == ["FOO=bar"])
        #expect(p.options.workingDirectory == "/tmp")
        #expect(p.options.stopGrace == 3)
        #expect(p.settings.interval == nil)
        #expect([1, 2, 3, 4, 7, 8, 50].map(p.restartDelay) == [0.5, 1, 2, 4, 32, 60, 60])
    }

    @Test func sampleYAMLIsValid() throws {
        var text = try String(contentsOfFile: fixture("../../sample.yaml"), encoding: .utf8)
        if executablePath("python3") == nil { text = text.replacingOccurrences(of: "[python3,", with: "[/bin/sh,") }
        let result = try makePlugins(PluginRegistry([ExecPlugin.factory]), yaml: text, file: "sample.yaml")
        #expect(result.errors == [])
    }
}

final class Collected: Sendable {
    let bytes = Mutex<[UInt8]>([])
}

/// A sampled plugin that counts.
final class Ticker: SampledSensorPlugin {
    let settings: PluginSettings
    init(settings: PluginSettings) { self.settings = settings }
    func sample(at time: Double) -> PluginSample {
        PluginSample(readings: [Reading(topicSuffix: "", fields: ["t": .number(time)], timestamp: time)])
    }
}

/// Alive and not a zombie (a container's pid 1 may never reap orphans).
func isRunning(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}
