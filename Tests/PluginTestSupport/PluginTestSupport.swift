import ConfigTree
import DaemonConfig
import Foundation
import Platform
import SensorPlugins
import Synchronization

// Shared helpers of the plugin test targets: YAML → plugin nodes through the daemon's own YAML
// parser, temporary fake trees, a thread-safe recorder for host callbacks, and polling.

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The entries of the `plugins:` list of a YAML text, as the daemon would hand them over.
public func pluginNodes(yaml: String, file: String = "bitnetd.yaml") throws -> [ConfigNode] {
    let (root, errors) = try YAMLParser.parse(yaml, file: file, environment: { _ in nil })
    if !errors.isEmpty { throw TestFailure(errors.map(\.description).joined(separator: "\n")) }
    guard let list = root["plugins"], case .sequence(let items) = list.content else {
        throw TestFailure("\(file): no plugins list")
    }
    return items
}

/// Builds the plugins of a YAML text: the plugins, or (when the config has problems) the error lines.
public func makePlugins(_ registry: PluginRegistry, yaml: String, file: String = "bitnetd.yaml")
    throws -> (plugins: [any SensorPlugin], errors: [String]) {
    let nodes = try pluginNodes(yaml: yaml, file: file)
    do throws(ConfigErrors) {
        return (try registry.makePlugins(nodes), [])
    } catch {
        return ([], error.errors.map(\.description))
    }
}

/// A fresh directory under the system temp folder, removed by `remove()`.
public struct TempDir: Sendable {
    public let path: String

    public init(_ label: String = "plugin-test") throws {
        var template = Array((NSTemporaryDirectory() + "/bitnetd-\(label)-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: p)
    }

    public func file(_ relative: String) -> String { path + "/" + relative }

    public func write(_ relative: String, _ text: String, executable: Bool = false) throws {
        let full = file(relative)
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: false, encoding: .utf8)
        if executable { chmod(full, 0o755) }
    }

    public func append(_ relative: String, _ text: String) throws {
        guard let h = FileHandle(forWritingAtPath: file(relative)) else { throw TestFailure("cannot open \(relative)") }
        defer { try? h.close() }
        h.seekToEndOfFile()
        h.write(Data(text.utf8))
    }

    /// Copies a fixture tree into this directory (so a test may change it).
    public func copyTree(from source: String, to relative: String = "root") throws -> String {
        let dest = file(relative)
        try FileManager.default.copyItem(atPath: source, toPath: dest)
        return dest
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// `Fixtures/<name>` beside the test file that calls it.
public func fixture(_ name: String, file: String = #filePath) -> String {
    URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("Fixtures").appendingPathComponent(name).path
}

/// Records what a `PluginHost` or a `PluginSink` delivers, from any thread.
public final class Recorder: Sendable {
    public struct Entry: Sendable {
        public var plugin: String
        public var reading: Reading?
        public var error: PluginError?
        public var time: Double
    }

    private let state = Mutex<(entries: [Entry], logs: [(Logger.Level, String)])>(([], []))

    public init() {}

    public var readings: [Reading] { state.withLock { $0.entries.compactMap(\.reading) } }
    public var errors: [PluginError] { state.withLock { $0.entries.compactMap(\.error) } }
    public var entries: [Entry] { state.withLock { $0.entries } }
    public var logs: [String] { state.withLock { $0.logs.map(\.1) } }

    public var onReading: PluginHost.ReadingHandler {
        { s, r in self.state.withLock { $0.entries.append(Entry(plugin: s.name, reading: r, time: monotonicSeconds())) } }
    }

    public var onError: PluginHost.ErrorHandler {
        { s, e in self.state.withLock { $0.entries.append(Entry(plugin: s.name, error: e, time: monotonicSeconds())) } }
    }

    public var log: Logger.Handler {
        { level, m in self.state.withLock { $0.logs.append((level, m)) } }
    }

    /// A logger whose every line is recorded (for `PluginHost(logger:)`).
    public var logger: Logger { Logger(label: "test", handler: log) }

    public func sink(name: String = "test") -> PluginSink {
        let settings = PluginSettings(id: "test", name: name)
        let (r, e) = (onReading, onError)
        return PluginSink(reading: { r(settings, $0) }, error: { e(settings, $0) }, log: log)
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; returns whether it held.
public func poll(timeout: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = monotonicSeconds() + timeout
    while monotonicSeconds() < deadline {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return condition()
}

/// Whether a process exists (signal 0).
public func processExists(_ pid: pid_t) -> Bool {
    kill(pid, 0) == 0 || errno == EPERM
}
