import Foundation
import Platform
import PluginSystem
import SensorPlugins
import Testing
import TestKit

@Suite struct SystemPluginTests {
    let settings = PluginSettings(id: "system", name: "system", interval: 10)

    @Test func recordedProcTree() throws {
        let dir = TempDir("system")
        defer { dir.remove() }
        let root = try dir.copyTree(from: fixture("debian-x86"))
        let plugin = SystemPlugin(settings: settings, root: FileSystemRoot(root))

        let first = plugin.sample(at: 100)
        #expect(first.errors.isEmpty)
        let r = try #require(first.readings.first)
        #expect(first.readings.count == 1)
        #expect(r.topicSuffix == "")
        #expect(r.timestamp == 100)
        // Values of the recorded files (fixture: this build machine, 24 GB).
        #expect(r.fields.keys == ["load1", "load5", "load15", "mem_total_bytes", "mem_available_bytes",
                                  "mem_used_percent", "uptime_s"])
        #expect(r.fields["load1"] == 4.71)
        #expect(r.fields["load15"] == 3.98)
        #expect(r.fields["mem_total_bytes"] == .number(24_683_656 * 1024))
        #expect(r.fields["mem_available_bytes"] == .number(22_924_984 * 1024))
        #expect(r.fields["mem_used_percent"] == 7.12)
        // No CPU usage yet: it needs two samples of /proc/stat.
        #expect(r.fields["cpu_usage_percent"] == nil)

        try FileManager.default.removeItem(atPath: root + "/proc/stat")
        try FileManager.default.copyItem(atPath: fixture("stat-1s-later"), toPath: root + "/proc/stat")
        let second = plugin.sample(at: 101)
        // Recorded under a full build: 203 jiffies busy, none idle.
        #expect(second.readings.first?.fields["cpu_usage_percent"] == 100)
    }

    @Test func cpuUsageFromTwoSamples() throws {
        let dir = TempDir("system")
        defer { dir.remove() }
        let root = try dir.copyTree(from: fixture("debian-x86"))
        let plugin = SystemPlugin(settings: settings, root: FileSystemRoot(root))
        //                                 user nice system idle iowait irq softirq steal guest guest_nice
        dir.write("root/proc/stat", "cpu  1000 0 500 8000 500 0 0 0 0 0\ncpu0 1 2 3 4\n")
        _ = plugin.sample(at: 1)
        dir.write("root/proc/stat", "cpu  1100 0 550 8300 550 0 0 0 50 0\ncpu0 1 2 3 4\n")
        // busy 150 of 500 jiffies (guest is part of user and not counted twice).
        #expect(plugin.sample(at: 2).readings.first?.fields["cpu_usage_percent"] == 30)
        // Counters that go backwards (a fake tree reset, a wrap): no value rather than a wrong one.
        dir.write("root/proc/stat", "cpu  10 0 5 80 5 0 0 0 0 0\n")
        #expect(plugin.sample(at: 3).readings.first?.fields["cpu_usage_percent"] == nil)
    }

    @Test func garbageMissingAndUnreadableFilesAreReportedOneByOne() throws {
        let dir = TempDir("system")
        defer { dir.remove() }
        let root = try dir.copyTree(from: fixture("debian-x86"))
        dir.write("root/proc/loadavg", "garbage\n")
        try FileManager.default.removeItem(atPath: root + "/proc/uptime")
        try FileManager.default.removeItem(atPath: root + "/proc/stat")
        try FileManager.default.createDirectory(atPath: root + "/proc/stat", withIntermediateDirectories: false)
        dir.write("root/proc/meminfo", "MemTotal: 1000 kB\nMemFree: 10 kB\n")
        let plugin = SystemPlugin(settings: settings, root: FileSystemRoot(root))
        let sample = plugin.sample(at: 1)
        #expect(sample.readings.isEmpty)
        #expect(sample.errors.map(\.code) == ["bad_value", "bad_value", "read_failed", "read_failed"])
        #expect(sample.errors[0].message == "\(root)/proc/loadavg: expected three load averages, got 'garbage'")
        #expect(sample.errors[1].message == "\(root)/proc/meminfo: no MemAvailable line (Linux 3.14 or newer is needed)")
        #expect(sample.errors[2].message == "\(root)/proc/uptime: No such file or directory")
        #expect(sample.errors[3].message == "\(root)/proc/stat: Is a directory")

        dir.write("root/proc/uptime", "12.5 20.0\n")
        let partial = plugin.sample(at: 2)
        #expect(partial.readings.first?.fields == ["uptime_s": 12.5])
        #expect(partial.errors.count == 3)
    }

    @Test func readsTheRealProc() {
        let sample = SystemPlugin(settings: settings).sample(at: wallClock())
        #expect(sample.errors.isEmpty)
        let fields = sample.readings.first?.fields
        #expect(fields?["load1"] != nil)
        if case .number(let total) = fields?["mem_total_bytes"] { #expect(total > 1_048_576) } else { Issue.record("no memory total") }
    }

    @Test func sampleYAMLIsValid() throws {
        let text = try String(contentsOfFile: fixture("../../sample.yaml"), encoding: .utf8)
        let result = try makePlugins(PluginRegistry([SystemPlugin.factory]), yaml: text, file: "sample.yaml")
        #expect(result.errors == [])
        #expect(result.plugins.first?.settings.interval == 10)
    }
}
