import Foundation
import JSONValue
import PluginFileTail
import SensorPlugins
import Testing
import TestKit

@Suite struct FileTailPluginTests {
    let settings = PluginSettings(id: "file-tail", name: "logger", interval: 1)

    @Test func recordedLoggerOutputFromTheBeginning() throws {
        let path = fixture("datalogger.log")
        let plugin = FileTailPlugin(settings: settings, path: path, fromBeginning: true)
        let sample = plugin.sample(at: 50)
        #expect(sample.readings == [
            Reading(topicSuffix: "", fields: ["temperature_c": 19.5, "door": "closed"], timestamp: 50),
            Reading(topicSuffix: "cellar", fields: ["temperature_c": 12.25, "humidity_percent": 81], timestamp: 1_764_427_200.5),
            Reading(topicSuffix: "", fields: ["temperature_c": 19.75, "door": "open", "battery_ok": true,
                                              "note": "opened by \"Bob\""], timestamp: 50),
        ])
        #expect(sample.errors.map(\.description) == [
            "bad_line: \(path): field 'temperature_c' is an array; fields must be numbers, strings or booleans: '{\"temperature_c\": [1, 2]}'",
            "bad_line: \(path): expected key=value, got 'this': 'this line is not a reading'",
            "bad_line: \(path): not JSON: unexpected end of input in an object at byte 20: '{\"temperature_c\": 20'",
        ])
        // Nothing new: nothing read.
        #expect(plugin.sample(at: 51) == PluginSample())
    }

    @Test func startsAtTheEndAndFollowsAppends() throws {
        let dir = TempDir("tail")
        defer { dir.remove() }
        dir.write("log", "a=1\nb=2\n")
        let plugin = FileTailPlugin(settings: settings, path: dir.file("log"))
        #expect(plugin.sample(at: 1) == PluginSample())
        dir.append("log", "c=3\nd=")
        #expect(plugin.sample(at: 2).readings.map(\.fields) == [["c": 3]])
        // The partial line is held until its newline arrives.
        dir.append("log", "4\n")
        #expect(plugin.sample(at: 3).readings.map(\.fields) == [["d": 4]])
    }

    @Test func survivesRenameAndCreate() throws {
        let dir = TempDir("tail")
        defer { dir.remove() }
        dir.write("log", "old=0\n")
        let plugin = FileTailPlugin(settings: settings, path: dir.file("log"))
        _ = plugin.sample(at: 1)
        dir.append("log", "old=1\n")
        // logrotate: rename, then the writer appends a last line to the old file and opens a new one.
        #expect(rename(dir.file("log"), dir.file("log.1")) == 0)
        dir.append("log.1", "old=2\n")
        #expect(plugin.sample(at: 2).readings.map(\.fields) == [["old": 1], ["old": 2]])
        dir.write("log", "new=1\nnew=2\n")
        #expect(plugin.sample(at: 3).readings.map(\.fields) == [["new": 1], ["new": 2]])
        dir.append("log", "new=3\n")
        dir.append("log.1", "old=3\n")
        #expect(plugin.sample(at: 4).readings.map(\.fields) == [["new": 3]])
    }

    @Test func survivesTruncation() throws {
        let dir = TempDir("tail")
        defer { dir.remove() }
        dir.write("log", "x=1\nx=2\n")
        let plugin = FileTailPlugin(settings: settings, path: dir.file("log"), fromBeginning: true)
        #expect(plugin.sample(at: 1).readings.count == 2)
        // copytruncate: same inode, size back to zero, then new lines.
        #expect(truncate(dir.file("log"), 0) == 0)
        dir.append("log", "x=3\n")
        #expect(plugin.sample(at: 2).readings.map(\.fields) == [["x": 3]])
    }

    @Test func missingFileIsReportedThenReadFromItsBeginningWhenItAppears() throws {
        let dir = TempDir("tail")
        defer { dir.remove() }
        let plugin = FileTailPlugin(settings: settings, path: dir.file("later.log"))
        let first = plugin.sample(at: 1)
        #expect(first.errors == [PluginError("read_failed", "\(dir.file("later.log")): No such file or directory")])
        dir.write("later.log", "{\"v\": 1}\n")
        #expect(plugin.sample(at: 2).readings.map(\.fields) == [["v": 1]])
    }

    @Test func overlongLinesAreSkipped() throws {
        let dir = TempDir("tail")
        defer { dir.remove() }
        dir.write("log", "")
        let plugin = FileTailPlugin(settings: settings, path: dir.file("log"), maxLineBytes: 256)
        _ = plugin.sample(at: 1)
        dir.append("log", "k=" + String(repeating: "x", count: 1000) + "\nk=ok\n")
        let sample = plugin.sample(at: 2)
        #expect(sample.readings.map(\.fields) == [["k": "ok"]])
        #expect(sample.errors.count == 1)
        #expect(sample.errors.first?.message.contains("line longer than 256 bytes skipped") == true)
    }

    @Test func formatAndSuffixOptions() throws {
        let registry = PluginRegistry([FileTailPlugin.factory])
        let bad = try makePlugins(registry, yaml: """
            plugins:
              - id: file-tail
                path: relative.log
                format: jsn
                topic_suffix: a/#
              - id: file-tail
            """)
        #expect(bad.errors == [
            "bitnetd.yaml:3:11: plugins[0].path: expected an absolute path, got 'relative.log'",
            "bitnetd.yaml:4:13: plugins[0].format: expected one of json, kv, auto; got 'jsn'; did you mean 'json'?",
            "bitnetd.yaml:5:19: plugins[0].topic_suffix: a topic suffix cannot contain '+' or '#', got 'a/#'",
            "bitnetd.yaml:6:5: plugins[1].path: required key is missing",
        ])
        let dir = TempDir("tail")
        defer { dir.remove() }
        dir.write("log", "")
        let ok = try makePlugins(registry, yaml: """
            plugins:
              - id: file-tail
                path: \(dir.file("log"))
                format: json
                topic_suffix: garden
            """)
        let plugin = try #require(ok.plugins.first as? FileTailPlugin)
        _ = plugin.sample(at: 1)
        dir.append("log", "{\"t\": 1}\nt=2\n")
        let sample = plugin.sample(at: 2)
        #expect(sample.readings == [Reading(topicSuffix: "garden", fields: ["t": 1], timestamp: 2)])
        #expect(sample.errors.first?.message.contains("not JSON") == true)
    }

    @Test func sampleYAMLIsValid() throws {
        let text = try String(contentsOfFile: fixture("../../sample.yaml"), encoding: .utf8)
        let result = try makePlugins(PluginRegistry([FileTailPlugin.factory]), yaml: text, file: "sample.yaml")
        #expect(result.errors == [])
    }
}
