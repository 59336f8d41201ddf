import BuiltinPlugins
import Foundation
import Platform
import PluginFileTail
import PluginLinuxThermal
import PluginSystem
import SensorPlugins
import Testing
import TestKit

/// Overhead of the built-in plugins: CPU per sample, and CPU and RSS of a host running all of them
/// at 1 s intervals. Figures for the issue notes, never timed assertions; run with
/// `BITNETD_MEASURE=1 swift test --filter PluginOverheadTests`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["BITNETD_MEASURE"] != nil))
struct PluginOverheadTests {
    func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }

    func rssKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    @Test func overhead() async throws {
        let dir = TempDir("measure")
        defer { dir.remove() }
        dir.write("log", "")
        let thermalRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../plugins/linux-thermal/Tests/Fixtures/pi4").standardizedFileURL.path
        let system = SystemPlugin(settings: PluginSettings(id: "system", name: "system", interval: 1))
        let thermal = LinuxThermalPlugin(settings: PluginSettings(id: "linux-thermal", name: "soc", interval: 1),
                                         root: FileSystemRoot(thermalRoot))
        let tail = FileTailPlugin(settings: PluginSettings(id: "file-tail", name: "log", interval: 1), path: dir.file("log"))

        var report = ["per sample (CPU µs, mean of 2000):"]
        for (name, plugin) in [("system", system as any SampledSensorPlugin), ("linux-thermal", thermal), ("file-tail", tail)] {
            _ = plugin.sample(at: 0)
            let c0 = cpuSeconds()
            for i in 0..<2000 {
                if name == "file-tail" { dir.append("log", "{\"n\": \(i)}\n") }
                _ = plugin.sample(at: 0)
            }
            report.append("  \(name): \(String(format: "%.1f", (cpuSeconds() - c0) / 2000 * 1e6))")
        }

        let writer = Task.detached {
            for i in 0..<30 {
                dir.append("log", "temp_c=\(20 + i % 5)\n")
                try? await Task.sleep(nanoseconds: 1_000_000_000)
            }
        }
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        let rss0 = rssKiB(), c0 = cpuSeconds(), t0 = monotonicSeconds()
        host.start(plugins: [SystemPlugin(settings: system.settings), LinuxThermalPlugin(settings: thermal.settings, root: thermal.root),
                             FileTailPlugin(settings: tail.settings, path: dir.file("log"))],
                   onReading: rec.onReading, onError: rec.onError)
        try await Task.sleep(nanoseconds: 30_000_000_000)
        let cpu = cpuSeconds() - c0, wall = monotonicSeconds() - t0, rss1 = rssKiB()
        host.stop()
        writer.cancel()
        report.append("host, 3 built-ins at 1 s for \(Int(wall)) s: \(rec.readings.count) readings, \(rec.errors.count) errors, "
            + "CPU \(String(format: "%.3f", cpu)) s (\(String(format: "%.3f", 100 * cpu / wall)) % of one core, test runner included), "
            + "RSS \(rss0) → \(rss1) KiB")
        print(report.joined(separator: "\n"))
        #expect(rec.readings.count >= 50)
    }
}
