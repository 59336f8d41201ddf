import JSONValue
import Platform
import SensorPlugins

/// `linux-thermal`: the kernel's thermal zones, `<root>/sys/class/thermal/thermal_zone*/`.
///
/// One reading per zone, topic suffix = the zone's directory name (`thermal_zone0`), fields
/// `temp_c` (°C, from `temp` in milli-°C) and `type` (the `type` file, e.g. `cpu-thermal`). A zone
/// whose files cannot be read or hold garbage is reported and skipped; the others are still read.
public final class LinuxThermalPlugin: SampledSensorPlugin {
    public static let id = "linux-thermal"

    public let settings: PluginSettings
    public let root: FileSystemRoot
    /// Zone directory names to read; nil = every `thermal_zone*` found at each sample.
    public let zones: [String]?

    public init(settings: PluginSettings, root: FileSystemRoot = FileSystemRoot(), zones: [String]? = nil) {
        self.settings = settings
        self.root = root
        self.zones = zones
    }

    public static let factory = PluginFactory(
        id: id, summary: "SoC and board temperatures from /sys/class/thermal", defaultInterval: 10
    ) { settings, options in
        let root = options.string("root", default: "/")
        let zones = options.stringItems("zones")
        for (i, z) in (zones ?? []).enumerated() where !z.value.hasPrefix("thermal_zone") || z.value.contains("/") {
            options.error(at: z.mark, path: "\(options.keyPath("zones"))[\(i)]",
                          "expected a zone directory name like thermal_zone0, got '\(z.value)'")
        }
        return LinuxThermalPlugin(settings: settings, root: FileSystemRoot(root), zones: zones?.map(\.value))
    }

    public func sample(at time: Double) -> PluginSample {
        var sample = PluginSample()
        let base = root.path("/sys/class/thermal")
        let names: [String]
        if let zones {
            names = zones
        } else {
            do throws(PluginError) {
                names = try listSensorDirectory(base).filter { $0.hasPrefix("thermal_zone") }
                    .sorted { zoneNumber($0) < zoneNumber($1) }
            } catch {
                sample.errors.append(error)
                return sample
            }
            if names.isEmpty {
                sample.errors.append(PluginError("no_data", "no thermal zones under \(base)"))
                return sample
            }
        }
        for name in names {
            let dir = base + "/" + name
            do throws(PluginError) {
                let raw = try readSensorText(dir + "/temp")
                guard let milli = Int(raw) else {
                    throw PluginError("bad_value", "\(dir)/temp: expected an integer in milli-°C, got '\(excerpt(Array(raw.utf8), limit: 40))'")
                }
                var fields: JSONObject = ["temp_c": .number(Double(milli) / 1000)]
                // `type` is informative; a zone without it is still a temperature.
                if let type = try? readSensorText(dir + "/type"), !type.isEmpty {
                    fields["type"] = .string(type)
                }
                sample.readings.append(Reading(topicSuffix: name, fields: fields, timestamp: time))
            } catch {
                sample.errors.append(error)
            }
        }
        return sample
    }

    private func zoneNumber(_ name: String) -> Int {
        Int(name.dropFirst("thermal_zone".count)) ?? Int.max
    }
}
