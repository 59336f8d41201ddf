import Foundation
import Platform
import PluginLinuxThermal
import SensorPlugins
import Testing
import TestKit

@Suite struct LinuxThermalPluginTests {
    let settings = PluginSettings(id: "linux-thermal", name: "soc", interval: 10)

    @Test func readsEveryZoneOfAPi4Tree() {
        let plugin = LinuxThermalPlugin(settings: settings, root: FileSystemRoot(fixture("pi4")))
        let sample = plugin.sample(at: 1000)
        #expect(sample.errors.isEmpty)
        #expect(sample.readings == [
            Reading(topicSuffix: "thermal_zone0", fields: ["temp_c": 47.236, "type": "cpu-thermal"], timestamp: 1000),
        ])
    }

    @Test func brokenZonesAreReportedAndTheOthersStillRead() {
        let plugin = LinuxThermalPlugin(settings: settings, root: FileSystemRoot(fixture("broken") + "/"))
        let sample = plugin.sample(at: 5)
        // Numeric zone order (10 after 3), cooling devices ignored, negative temperatures kept.
        #expect(sample.readings.map(\.topicSuffix) == ["thermal_zone0", "thermal_zone10"])
        #expect(sample.readings.map { $0.fields["temp_c"] } == [.number(45), .number(-5.5)])
        #expect(sample.readings.last?.fields["type"] == "outdoor")
        let messages = sample.errors.map(\.description)
        #expect(messages.count == 3)
        #expect(messages[0].hasPrefix("read_failed: ") && messages[0].hasSuffix("thermal_zone1/temp: No such file or directory"))
        #expect(messages[1].hasPrefix("read_failed: ") && messages[1].hasSuffix("thermal_zone2/temp: Is a directory"))
        #expect(messages[2].hasPrefix("bad_value: ") && messages[2].hasSuffix("thermal_zone3/temp: expected an integer in milli-°C, got 'abc'"))
    }

    @Test func configuredZonesOnlyAndAMissingOne() {
        let plugin = LinuxThermalPlugin(settings: settings, root: FileSystemRoot(fixture("pi4")),
                                        zones: ["thermal_zone0", "thermal_zone7"])
        let sample = plugin.sample(at: 5)
        #expect(sample.readings.map(\.topicSuffix) == ["thermal_zone0"])
        #expect(sample.errors.count == 1)
        #expect(sample.errors.first?.message.hasSuffix("thermal_zone7/temp: No such file or directory") == true)
    }

    @Test func noThermalDirectoryOrNoZones() throws {
        let dir = TempDir("thermal")
        defer { dir.remove() }
        let plugin = LinuxThermalPlugin(settings: settings, root: FileSystemRoot(dir.path))
        #expect(plugin.sample(at: 1).errors.map(\.code) == ["read_failed"])
        try FileManager.default.createDirectory(atPath: dir.file("sys/class/thermal/cooling_device0"), withIntermediateDirectories: true)
        let sample = plugin.sample(at: 1)
        #expect(sample.readings.isEmpty)
        #expect(sample.errors == [PluginError("no_data", "no thermal zones under \(dir.path)/sys/class/thermal")])
    }

    @Test func aZoneThatAppearsLaterIsPickedUp() throws {
        let dir = TempDir("thermal")
        defer { dir.remove() }
        let root = try dir.copyTree(from: fixture("pi4"))
        let plugin = LinuxThermalPlugin(settings: settings, root: FileSystemRoot(root))
        #expect(plugin.sample(at: 1).readings.count == 1)
        dir.write("root/sys/class/thermal/thermal_zone1/temp", "38000\n")
        #expect(plugin.sample(at: 2).readings.map(\.topicSuffix) == ["thermal_zone0", "thermal_zone1"])
        #expect(plugin.sample(at: 2).readings.last?.fields["type"] == nil)
    }

    @Test func optionsFromYAML() throws {
        let registry = PluginRegistry([LinuxThermalPlugin.factory])
        let ok = try makePlugins(registry, yaml: """
            plugins:
              - id: linux-thermal
                root: /tmp/fake
                zones: [thermal_zone0]
                interval_s: 2.5
            """)
        #expect(ok.errors == [])
        let plugin = try #require(ok.plugins.first as? LinuxThermalPlugin)
        #expect(plugin.root == FileSystemRoot("/tmp/fake"))
        #expect(plugin.zones == ["thermal_zone0"])
        #expect(plugin.settings.interval == 2.5)
        #expect(plugin.settings.name == "linux-thermal")

        let bad = try makePlugins(registry, yaml: """
            plugins:
              - id: linux-thermal
                zones: [cpu]
                interval_s: 0
                rooot: /x
            """)
        #expect(bad.errors == [
            "bitnetd.yaml:3:13: plugins[0].zones[0]: expected a zone directory name like thermal_zone0, got 'cpu'",
            "bitnetd.yaml:4:17: plugins[0].interval_s: expected 0.1...86400, got 0",
            "bitnetd.yaml:5:5: plugins[0].rooot: unknown key 'rooot'; did you mean 'root'?",
        ])
    }

    @Test func sampleYAMLIsValid() throws {
        let text = try String(contentsOfFile: fixture("../../sample.yaml"), encoding: .utf8)
        let result = try makePlugins(PluginRegistry([LinuxThermalPlugin.factory]), yaml: text, file: "sample.yaml")
        #expect(result.errors == [])
        #expect(result.plugins.count >= 1)
    }
}
