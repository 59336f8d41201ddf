import BuiltinPlugins
import ConfigTree
import SensorPlugins
import Testing
import TestKit

@Suite struct PluginRegistryTests {
    let registry = BuiltinPlugins.registry

    @Test func commonKeysAndDefaults() throws {
        let result = try makePlugins(registry, yaml: """
            plugins:
              - id: system
              - id: linux-thermal
                name: soc_temp
                topic: house/kitchen/soc
                interval_s: 2
                publish: false
            """)
        #expect(result.errors == [])
        let s = result.plugins.map(\.settings)
        #expect(s[0] == PluginSettings(id: "system", name: "system", topic: nil, interval: 10, publish: true,
                                       path: "plugins[0]", mark: Mark(file: "bitnetd.yaml", line: 2, column: 5)))
        #expect(s[1].name == "soc_temp")
        #expect(s[1].topic == "house/kitchen/soc")
        #expect(s[1].interval == 2)
        #expect(s[1].publish == false)
        #expect(s[1].path == "plugins[1]")
    }

    @Test func everyProblemIsReportedWithFileLineAndColumn() throws {
        let result = try makePlugins(registry, yaml: """
            plugins:
              - id: linux-thermel
              - id: system
                name: has/slash
                topic: a/+/b
                interval_s: fast
                publish: maybe
                colour: blue
              - id: system
              - id: system
              - [id, system]
              - id: file-tail
                path: /var/log/x
                from_begining: true
            """, file: "etc/bitnetd.yaml")
        #expect(result.errors == [
            "etc/bitnetd.yaml:2:9: plugins[0].id: unknown plugin 'linux-thermel'; did you mean 'linux-thermal'? (built-in: exec, file-tail, linux-thermal, system)",
            "etc/bitnetd.yaml:4:11: plugins[1].name: expected letters, digits, '-' and '_' (it becomes a topic level), got 'has/slash'",
            "etc/bitnetd.yaml:5:12: plugins[1].topic: a publish topic cannot contain '+' or '#', got 'a/+/b'",
            "etc/bitnetd.yaml:6:17: plugins[1].interval_s: expected a number, got 'fast'",
            "etc/bitnetd.yaml:7:14: plugins[1].publish: expected true or false, got 'maybe'",
            "etc/bitnetd.yaml:8:5: plugins[1].colour: unknown key 'colour'",
            "etc/bitnetd.yaml:10:9: plugins[3].name: duplicate plugin name 'system' (first at 9:9); give each instance its own name:",
            "etc/bitnetd.yaml:11:5: plugins[4]: expected a mapping, got a list",
            "etc/bitnetd.yaml:14:5: plugins[5].from_begining: unknown key 'from_begining'; did you mean 'from_beginning'?",
        ])
    }

    @Test func kebabCase() {
        #expect(isKebabCase("linux-thermal"))
        #expect(isKebabCase("exec"))
        #expect(isKebabCase("i2c-bme280"))
        #expect(!isKebabCase("Linux-thermal"))
        #expect(!isKebabCase("file_tail"))
        #expect(!isKebabCase("-x"))
        #expect(!isKebabCase("a--b"))
        #expect(!isKebabCase("2x"))
        #expect(!isKebabCase(""))
    }
}
