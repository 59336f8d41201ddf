import ConfigTree
import Testing

/// The one typed reader of the configuration tree, in both of its unknown-key modes.
@Suite struct ConfigReaderTests {
    static let m = Mark(file: "c.yaml", line: 1, column: 1)
    static func scalar(_ s: String, _ line: Int, plain: Bool = true) -> ConfigNode {
        ConfigNode(.scalar(s, plain: plain), mark: Mark(file: "c.yaml", line: line, column: 9))
    }
    static func mapping(_ pairs: [(String, ConfigNode)]) -> ConfigNode {
        ConfigNode(.mapping(pairs.map { ConfigEntry(key: $0.0, keyMark: Mark(file: "c.yaml", line: $0.1.mark.line, column: 3), value: $0.1) }),
                   mark: m)
    }

    @Test func knownKeysAreCheckedUpFront() {
        let node = Self.mapping([("port", Self.scalar("0x50", 2)), ("prot", Self.scalar("5", 3))])
        let r = ConfigReader(node, path: "mqtt", known: ["port", "protocol"])
        #expect(r.int("port", default: 1, range: 1...65535) == 80)
        #expect(r.errors.map(\.description) == ["c.yaml:3:3: mqtt.prot: unknown key 'prot'; did you mean 'port'?"])
    }

    @Test func withoutAListTheKeysAskedForAreTheKnownOnes() {
        let node = Self.mapping([("interval_s", Self.scalar("0", 2)), ("pth", Self.scalar("/x", 3)), ("path", Self.scalar("/y", 4))])
        let r = ConfigReader(node, path: "plugins[2]")
        #expect(r.double("interval_s", default: 5, range: 0.1...86_400) == 5)
        #expect(r.string("path") == "/y")
        #expect(r.requiredString("command") == nil)
        r.reportUnknownKeys()
        #expect(ConfigErrors(r.errors).errors.map(\.description) == [
            "c.yaml:1:1: plugins[2].command: required key is missing",
            "c.yaml:2:9: plugins[2].interval_s: expected 0.1...86400, got 0",
            "c.yaml:3:3: plugins[2].pth: unknown key 'pth'; did you mean 'path'?",
        ])
    }

    @Test func nestedReadersShareTheDiagnostics() {
        let inner = Self.mapping([("on_change", Self.scalar("maybe", 5))])
        let r = ConfigReader(Self.mapping([("debounce", inner)]), path: "routes[0]", known: ["debounce"])
        let d = r.map("debounce", known: ["on_change"])
        #expect(d.bool("on_change", default: false) == false)
        #expect(r.errors.map(\.description) == ["c.yaml:5:9: routes[0].debounce.on_change: expected true or false, got 'maybe'"])
        let notMap = ConfigReader(Self.scalar("x", 7), path: "log")
        #expect(!notMap.isValid)
        #expect(notMap.errors.map(\.description) == ["c.yaml:7:9: log: expected a mapping, got 'x'"])
    }
}
