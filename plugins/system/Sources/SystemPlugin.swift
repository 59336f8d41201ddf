import JSONValue
import Platform
import SensorPlugins
import Synchronization

/// `system`: load, memory, uptime and CPU usage from `<root>/proc`.
///
/// One reading per sample, with no topic suffix (it is published on the plugin's topic):
/// `load1`, `load5`, `load15` (`/proc/loadavg`), `mem_total_bytes`, `mem_available_bytes`,
/// `mem_used_percent` (`/proc/meminfo`, MemTotal and MemAvailable), `uptime_s` (`/proc/uptime`),
/// and `cpu_usage_percent` — all CPUs, from the difference of two `/proc/stat` samples, so it
/// appears from the second sample on. Each file is read on its own: one unreadable or garbled
/// file is reported and the fields of the others are still published.
public final class SystemPlugin: SampledSensorPlugin {
    public static let id = "system"

    public let settings: PluginSettings
    public let root: FileSystemRoot
    /// (total, idle) jiffies of the previous `/proc/stat` sample.
    private let previousCPU = Mutex<(total: UInt64, idle: UInt64)?>(nil)

    public init(settings: PluginSettings, root: FileSystemRoot = FileSystemRoot()) {
        self.settings = settings
        self.root = root
    }

    public static let factory = PluginFactory(
        id: id, summary: "load averages, memory, uptime and CPU usage from /proc", defaultInterval: 10
    ) { settings, options in
        SystemPlugin(settings: settings, root: FileSystemRoot(options.string("root", default: "/")))
    }

    public func sample(at time: Double) -> PluginSample {
        var fields = JSONObject()
        var errors: [PluginError] = []
        func attempt(_ body: () throws(PluginError) -> Void) {
            do throws(PluginError) { try body() } catch { errors.append(error) }
        }
        attempt { () throws(PluginError) in
            let path = root.path("/proc/loadavg")
            let parts = try readSensorText(path).split(separator: " ")
            guard parts.count >= 3, let l1 = Double(parts[0]), let l5 = Double(parts[1]), let l15 = Double(parts[2]) else {
                throw PluginError("bad_value", "\(path): expected three load averages, got '\(excerpt(Array(parts.joined(separator: " ").utf8), limit: 60))'")
            }
            fields["load1"] = .number(l1)
            fields["load5"] = .number(l5)
            fields["load15"] = .number(l15)
        }
        attempt { () throws(PluginError) in
            let path = root.path("/proc/meminfo")
            var kB: [Substring: UInt64] = [:]
            for line in try readSensorText(path).split(separator: "\n") {
                let words = line.split(separator: " ", omittingEmptySubsequences: true)
                if words.count >= 2, words[0].hasSuffix(":"), let v = UInt64(words[1]) { kB[words[0].dropLast()] = v }
            }
            guard let total = kB["MemTotal"], total > 0 else {
                throw PluginError("bad_value", "\(path): no MemTotal line with a number of kB")
            }
            guard let available = kB["MemAvailable"] else {
                throw PluginError("bad_value", "\(path): no MemAvailable line (Linux 3.14 or newer is needed)")
            }
            fields["mem_total_bytes"] = .number(Double(total) * 1024)
            fields["mem_available_bytes"] = .number(Double(available) * 1024)
            fields["mem_used_percent"] = .number(round2(100 * (1 - Double(min(available, total)) / Double(total))))
        }
        attempt { () throws(PluginError) in
            let path = root.path("/proc/uptime")
            let text = try readSensorText(path)
            guard let first = text.split(separator: " ").first, let up = Double(first), up >= 0 else {
                throw PluginError("bad_value", "\(path): expected seconds since boot, got '\(excerpt(Array(text.utf8), limit: 60))'")
            }
            fields["uptime_s"] = .number(up)
        }
        attempt { () throws(PluginError) in
            let path = root.path("/proc/stat")
            let text = try readSensorText(path)
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else {
                throw PluginError("bad_value", "\(path): no 'cpu' line")
            }
            let numbers = line.split(separator: " ").dropFirst().map { UInt64($0) }
            guard numbers.count >= 4, numbers.allSatisfy({ $0 != nil }) else {
                throw PluginError("bad_value", "\(path): expected jiffy counters on the 'cpu' line, got '\(excerpt(Array(line.utf8), limit: 80))'")
            }
            let n = numbers.map { $0! }
            // user nice system idle iowait irq softirq steal (guest time is already in user).
            let total = n.prefix(8).reduce(0, &+)
            let idle = n[3] &+ (n.count > 4 ? n[4] : 0)
            let previous = previousCPU.withLock { p in
                defer { p = (total, idle) }
                return p
            }
            if let previous, total > previous.total, idle >= previous.idle {
                let busy = Double(total - previous.total) - Double(idle - previous.idle)
                fields["cpu_usage_percent"] = .number(round2(max(0, 100 * busy / Double(total - previous.total))))
            }
        }
        guard !fields.members.isEmpty else { return PluginSample(errors: errors) }
        return PluginSample(readings: [Reading(topicSuffix: "", fields: fields, timestamp: time)], errors: errors)
    }

    private func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 }
}
