import ConfigTree
import DaemonConfig
import Glibc
import Testing
import TestKit

/// Hardening: big, deep, self-referencing or malformed configurations are reported with a
/// position, never hang or crash the loader (the same code runs on SIGHUP inside the daemon).
@Suite struct HostileConfigTests {
    static func route(_ name: String) -> String {
        "  - name: \(name)\n    topic: t/\(name)\n    prompt: p\n    labels: [a, b]\n"
    }

    @Test func aLongListOfRoutesLoads() throws {
        let n = 32_000
        var yaml = "model:\n  path: /m.gguf\nroutes:\n"
        for i in 0..<n { yaml += Self.route("r\(i)") }
        let c = try load(yaml)
        #expect(c.routes.count == n)
        #expect(c.routes.last?.name == "r\(n - 1)")
    }

    @Test func aMappingOf32000KeysIsReportedKeyByKey() {
        var yaml = minimal + "mqtt:\n"
        for i in 0..<32_000 { yaml += "  k\(i): 1\n" }
        let e = errors(yaml)
        #expect(e.count == 32_000)
        #expect(e.first == "bitnetd.yaml:9:3: mqtt.k0: unknown key 'k0'")
    }

    @Test func manyAliasesOfOneAnchorLoad() throws {
        var yaml = "model:\n  path: /m.gguf\nx-labels: &l [a, b]\nroutes:\n"
        for i in 0..<2_000 { yaml += "  - {name: r\(i), topic: t/\(i), prompt: p, labels: *l}\n" }
        let e = errors(yaml)
        #expect(e.count == 1)  // only the unknown top-level key
        var plain = "model:\n  path: /m.gguf\nx: &v 1\ny:\n"
        for _ in 0..<100_000 { plain += "  - *v\n" }
        #expect(errors(plain).count == 2)  // x and y are unknown keys; the list itself is fine
    }

    @Test func aliasBombIsRefused() {
        // Ten levels of ten aliases each: 10^10 nodes once expanded.
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...10 {
            let refs = Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ")
            yaml += "a\(i): &a\(i) [\(refs)]\n"
        }
        let e = errors(yaml)
        #expect(e.count == 1)
        #expect(e.first?.contains("expands to more than 1000000 nodes") == true, "\(e)")
    }

    @Test func nestingDeeperThan64LevelsIsAnError() {
        let ok = "x: " + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "\n"
        #expect(!errors(minimal + ok).contains { $0.contains("nesting") })
        let deep = "x: " + String(repeating: "[", count: 40_000) + String(repeating: "]", count: 40_000) + "\n"
        // The top-level mapping is level 1, so the 64th '[' (column 67) opens level 65.
        #expect(errors(minimal + deep) == ["bitnetd.yaml:8:67: nesting deeper than 64 levels"])
        var block = ""
        for d in 0..<70 { block += String(repeating: "  ", count: d) + "k\(d):\n" }
        #expect(errors(block).first?.hasSuffix("nesting deeper than 64 levels") == true)
    }

    @Test func nonUTF8IsReportedAtItsLineAndColumn() {
        let dir = TempDir()
        let path = dir.path + "/bitnetd.yaml"
        var bytes = Array((minimal + "# café ok\n# bad: ab").utf8)
        bytes += [0xFF, 0x41, 0x0A]
        let f = fopen(path, "w")!
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
        do {
            _ = try ConfigLoader.load(path: path, environment: { _ in nil })
            Issue.record("loaded")
        } catch let e as ConfigErrors {
            #expect(e.errors.map(\.description) == ["\(path):9:10: the file is not valid UTF-8 (byte 0xFF at offset \(bytes.count - 3))"])
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func placeholdersAndEnvironmentReferencesMustBeClosed() {
        let bad = minimal.replacingOccurrences("Door {{state}} at", "Door {{a {{b}} at")
        #expect(errors(bad) == ["bitnetd.yaml:6:13: routes[0].prompt: '{{a {{b}}': a placeholder name cannot contain '{' or '}' (unclosed '{{' before it?)"])
        let env = minimal.replacingOccurrences("/models/demo.gguf", "/models/${HOME")
        #expect(errors(env) == ["bitnetd.yaml:2:9: model.path: unterminated environment reference '${HOME' (write ${NAME}, or $${ for a literal '${')"])
    }

    @Test func routeNamesAndTopicPrefixesAreOneSafeTopicLevel() {
        for name in ["a/b", "x/+/#", "\"\"", "'a b'", String(repeating: "n", count: 65)] {
            let e = errors(minimal.replacingOccurrences("name: door", "name: \(name)"))
            #expect(e.count == 1 && e[0].hasPrefix("bitnetd.yaml:4:11: routes[0].name: a route name is 1 to 64 characters"), "\(name): \(e)")
        }
        #expect(errors(minimal.replacingOccurrences("name: door", "name: Door_2-b")).isEmpty)
        for prefix in ["$SYS/x", "/x", "a/#", "a/+/b"] {
            let e = errors(minimal + "mqtt:\n  topic_prefix: \"\(prefix)\"\n")
            #expect(e.count == 1 && e[0].hasPrefix("bitnetd.yaml:9:17: mqtt.topic_prefix: "), "\(prefix): \(e)")
        }
    }
}
