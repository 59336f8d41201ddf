import DaemonConfig
import Glibc
import Testing
import TestKit

/// `etc/bitnetd.yaml` is the complete reference: it must load, and mention every key of the schema.
@Suite struct ReferenceConfigTests {
    static let path: String = {
        // swift test runs in the package root; fall back to this file's location.
        if access("etc/bitnetd.yaml", R_OK) == 0 { return "etc/bitnetd.yaml" }
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p + "/etc/bitnetd.yaml"
    }()

    @Test func referenceConfigLoads() throws {
        let c = try ConfigLoader.load(path: Self.path, environment: { _ in nil })
        #expect(c.model.path == "/usr/share/bitnetd/models/demo.gguf")
        #expect(c.routes.map(\.task) == [.decide, .generate])
        // The reference shows the defaults: loading it gives what an empty section gives.
        let dir = TempDir()
        let minimalConfig = try ConfigLoader.load(path: dir.write("m.yaml", "model: {path: /usr/share/bitnetd/models/demo.gguf}\n"),
                                                  environment: { _ in nil })
        #expect(c.mqtt.port == minimalConfig.mqtt.port)
        #expect(c.mqtt.keepalive == minimalConfig.mqtt.keepalive)
        #expect(c.mqtt.sessionExpiry == minimalConfig.mqtt.sessionExpiry)
        #expect(c.mqtt.reconnectMaxS == minimalConfig.mqtt.reconnectMaxS)
        #expect(c.queue == minimalConfig.queue)
        #expect(c.limits == minimalConfig.limits)
        #expect(c.stats == minimalConfig.stats)
        #expect(c.log == minimalConfig.log)
        #expect(c.model.memoryCheck == minimalConfig.model.memoryCheck)
    }

    @Test func everyKeyIsDocumented() throws {
        let text = try ConfigLoader.readTextFile(Self.path).get()
        for (section, keys) in BitnetdConfig.schemaKeys {
            for key in keys {
                let written = text.contains("\(key):") || text.contains("  \(key) ")
                #expect(written, "etc/bitnetd.yaml does not document \(section.isEmpty ? key : section + "." + key)")
            }
        }
    }
}
