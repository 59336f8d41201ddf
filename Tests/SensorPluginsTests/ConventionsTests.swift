import BuiltinPlugins
import Foundation
import Platform
import SensorPlugins
import Testing
import TestKit

/// Every `plugins/<id>/` folder is a complete plugin (STYLE.md guideline 9), like Telegraf's
/// conventions test: README.md, sample.yaml, Sources/, Tests/ with Fixtures/, a kebab-case id equal
/// to the folder name, in the registry; and every registered id has a folder. `plugins/all` is the
/// registry target itself.
@Suite struct ConventionsTests {
    static let pluginsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../plugins").standardizedFileURL.path

    static var folders: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: pluginsDir)) ?? [])
            .filter { name in
                var isDir: ObjCBool = false
                return name != "all" && FileManager.default.fileExists(atPath: pluginsDir + "/" + name, isDirectory: &isDir) && isDir.boolValue
            }
            .sorted()
    }

    @Test func thereArePluginFolders() {
        #expect(Self.folders.count >= 4)
    }

    @Test(arguments: ConventionsTests.folders)
    func folderIsComplete(_ id: String) throws {
        let dir = Self.pluginsDir + "/" + id
        let fm = FileManager.default
        #expect(isKebabCase(id), "folder name '\(id)' is not a kebab-case plugin id")
        #expect(BuiltinPlugins.registry[id] != nil, "plugin '\(id)' has a folder but is not in BuiltinPlugins.registry")
        for file in ["README.md", "sample.yaml"] {
            #expect(fm.fileExists(atPath: dir + "/" + file), "plugins/\(id)/\(file) is missing")
        }
        for sub in ["Sources", "Tests", "Tests/Fixtures"] {
            var isDir: ObjCBool = false
            #expect(fm.fileExists(atPath: dir + "/" + sub, isDirectory: &isDir) && isDir.boolValue, "plugins/\(id)/\(sub)/ is missing")
        }
        let sources = (try? fm.contentsOfDirectory(atPath: dir + "/Sources")) ?? []
        #expect(sources.contains { $0.hasSuffix(".swift") }, "plugins/\(id)/Sources has no Swift file")
        let tests = (try? fm.contentsOfDirectory(atPath: dir + "/Tests")) ?? []
        #expect(tests.contains { $0.hasSuffix("Tests.swift") }, "plugins/\(id)/Tests has no *Tests.swift file")

        // The README names the plugin and shows an example reading.
        let readme = (try? String(contentsOfFile: dir + "/README.md", encoding: .utf8)) ?? ""
        #expect(readme.hasPrefix("# \(id)\n"), "plugins/\(id)/README.md must start with '# \(id)'")
        #expect(readme.contains("```"), "plugins/\(id)/README.md has no example")

        // sample.yaml configures this plugin, and is valid.
        var yaml = try String(contentsOfFile: dir + "/sample.yaml", encoding: .utf8)
        // The exec sample runs python3, which a build chroot may lack; check-config would say so.
        if executablePath("python3") == nil { yaml = yaml.replacingOccurrences(of: "[python3,", with: "[/bin/sh,") }
        let result = try makePlugins(BuiltinPlugins.registry, yaml: yaml, file: "plugins/\(id)/sample.yaml")
        #expect(result.errors == [])
        #expect(!result.plugins.isEmpty && result.plugins.allSatisfy { $0.settings.id == id })
    }

    @Test func everyRegisteredPluginHasAFolder() {
        #expect(BuiltinPlugins.registry.ids.sorted() == Self.folders)
    }

    @Test func packageDeclaresATargetAndATestTargetPerPlugin() throws {
        let manifest = try String(contentsOfFile: Self.pluginsDir + "/../Package.swift", encoding: .utf8)
        for id in Self.folders {
            #expect(manifest.contains("(\"\(id)\", \"Plugin"), "Package.swift does not list plugins/\(id) in sensorPlugins")
        }
    }
}
