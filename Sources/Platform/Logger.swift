import Glibc
import Synchronization

/// A small logger with swift-log's shape: a label, levels, metadata; one process-wide handler
/// (stderr, which systemd sends to the journal) chosen by the executable. Lines carry a syslog
/// priority prefix (`<3>`) when stderr is the journal, so `journalctl -p err` works.
///
/// Libraries take a `Logger` (the plugin host, the MQTT client); a logger made with its own
/// `handler` sends every level there instead (tests record what a component logs that way).
public struct Logger: Sendable {
    public typealias Handler = @Sendable (Level, String) -> Void

    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical

        public init?(name: String) {
            guard let l = Level.allCases.first(where: { "\($0)" == name }) else { return nil }
            self = l
        }

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }

        var syslogPriority: Int {
            switch self {
            case .trace, .debug: return 7
            case .info: return 6
            case .notice: return 5
            case .warning: return 4
            case .error: return 3
            case .critical: return 2
            }
        }
    }

    public let label: String
    private let handler: Handler?

    /// `handler`: where this logger's messages go (every level, without the label); nil for the
    /// process-wide handler, filtered by `Logger.level`.
    public init(label: String, handler: Handler? = nil) {
        self.label = label
        self.handler = handler
    }

    /// Process-wide minimum level (changed on SIGHUP when `log.level` changes).
    public static var level: Level {
        get { Level(rawValue: currentLevel.load(ordering: .relaxed)) ?? .info }
        set { currentLevel.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Where lines go; tests install a recording handler.
    public static func setHandler(_ handler: @escaping @Sendable (Level, String) -> Void) {
        sink.withLock { $0 = handler }
    }

    public func log(_ level: Level, _ message: @autoclosure () -> String, _ metadata: KeyValuePairs<String, String> = [:]) {
        if let handler {
            var line = message()
            for (k, v) in metadata { line += " \(k)=\(v)" }
            handler(level, line)
            return
        }
        guard level >= Logger.level else { return }
        var line = "\(label): \(message())"
        for (k, v) in metadata { line += " \(k)=\(v)" }
        let sink = Logger.sink.withLock { $0 }
        sink(level, line)
    }

    public func trace(_ m: @autoclosure () -> String) { log(.trace, m()) }
    public func debug(_ m: @autoclosure () -> String) { log(.debug, m()) }
    public func info(_ m: @autoclosure () -> String) { log(.info, m()) }
    public func notice(_ m: @autoclosure () -> String) { log(.notice, m()) }
    public func warning(_ m: @autoclosure () -> String) { log(.warning, m()) }
    public func error(_ m: @autoclosure () -> String) { log(.error, m()) }
    public func critical(_ m: @autoclosure () -> String) { log(.critical, m()) }

    private static let currentLevel = Atomic<Int>(Level.info.rawValue)
    private static let sink = Mutex<@Sendable (Level, String) -> Void>(Logger.stderrHandler)

    private static let journal: Bool = getenv("JOURNAL_STREAM") != nil

    public static let stderrHandler: @Sendable (Level, String) -> Void = { level, line in
        let text: String
        if journal {
            text = "<\(level.syslogPriority)>\(line)\n"
        } else {
            text = "\(isoTimestamp()) \(level) \(line)\n"
        }
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
    }
}
