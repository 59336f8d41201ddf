import JSONValue
import SensorPlugins

/// The last readings a route decides on: the last N, those of the last span of seconds, or both
/// (whichever keeps fewer). Templates read it as `{{window.count}}`, `{{window.last.F}}`,
/// `{{window.mean.F}}`, `{{window.min.F}}`, `{{window.max.F}}` and `{{window.list.F}}`
/// (DESIGN.md §8) through `resolve(_:)`.
///
/// A value type: the daemon keeps one per route (and per input topic when a route matches several)
/// behind its own lock. Appending is O(1) amortised; a span window holds at most `hardLimit`
/// readings so a fast plugin cannot grow it without bound.
public struct ReadingWindow: Sendable {
    /// Upper bound on readings kept by any window.
    public static let hardLimit = 10_000
    /// Upper bound on the memory a window holds (an estimate: twice a reading's JSON text plus
    /// 256 bytes of structure); the oldest readings go first. With `maxWindowsPerRoute` this
    /// bounds a windowed route's share of `limits.memory_budget_mb` (docs/daemon.md).
    public static let maxBytes = 256 << 10
    /// Windows a route keeps (one per reading topic); a new topic beyond it replaces the window
    /// updated longest ago.
    public static let maxWindowsPerRoute = 16

    /// Keep at most this many readings (nil = no count limit).
    public let maxCount: Int?
    /// Keep readings at most this many seconds older than the newest one (nil = no time limit).
    public let span: Double?

    private var storage: [Reading] = []
    private var sizes: [Int] = []
    private var head = 0
    /// Estimated bytes held by the readings in the window.
    public private(set) var bytes = 0

    /// At least one of `maxCount` (1…10000) and `span` (> 0 s) must be given.
    public init(maxCount: Int? = nil, span: Double? = nil) {
        precondition(maxCount != nil || span != nil, "a window needs a count or a span")
        precondition(maxCount.map { $0 >= 1 && $0 <= ReadingWindow.hardLimit } ?? true, "window count out of range")
        precondition(span.map { $0 > 0 && $0.isFinite } ?? true, "window span must be positive")
        self.maxCount = maxCount
        self.span = span
    }

    /// The readings in the window, oldest first.
    public var readings: ArraySlice<Reading> { storage[head...] }
    public var count: Int { storage.count - head }
    public var isEmpty: Bool { count == 0 }
    public var last: Reading? { head < storage.count ? storage.last : nil }

    /// Adds a reading and drops those that fall out of the window. `now` (default: the reading's
    /// timestamp) is the time the span is measured back from.
    public mutating func append(_ reading: Reading, now: Double? = nil) {
        let size = 2 * JSON.object(reading.fields).serialized.utf8.count + 256
        storage.append(reading)
        sizes.append(size)
        bytes += size
        let limit = Swift.min(maxCount ?? ReadingWindow.hardLimit, ReadingWindow.hardLimit)
        while count > limit || (bytes > Self.maxBytes && count > 1) { dropOldest() }
        prune(now: now ?? reading.timestamp)
    }

    private mutating func dropOldest() {
        bytes -= sizes[head]
        head += 1
    }

    /// Drops readings older than `now - span` (a route evaluated on a timer calls this first).
    public mutating func prune(now: Double) {
        if let span {
            while head < storage.count, storage[head].timestamp < now - span { dropOldest() }
        }
        if head > 64 && head * 2 > storage.count {
            storage.removeFirst(head)
            sizes.removeFirst(head)
            head = 0
        }
    }

    public mutating func removeAll() {
        storage.removeAll()
        sizes.removeAll()
        head = 0
        bytes = 0
    }

    /// The values of a field, oldest first, skipping readings without it.
    public func values(_ field: String) -> [JSON] {
        readings.compactMap { $0.fields[field] }
    }

    /// The numeric values of a field (booleans and strings are skipped).
    public func numbers(_ field: String) -> [Double] {
        readings.compactMap { if case .number(let d) = $0.fields[field] { return d } else { return nil } }
    }

    public func mean(_ field: String) -> Double? {
        let v = numbers(field)
        return v.isEmpty ? nil : v.reduce(0, +) / Double(v.count)
    }

    public func min(_ field: String) -> Double? { numbers(field).min() }
    public func max(_ field: String) -> Double? { numbers(field).max() }

    /// Why a window path cannot be resolved; the daemon reports it as bad input (a template with a
    /// missing value is an error, never an empty string).
    public struct PathError: Error, Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var message: String
        public var description: String { "\(path): \(message)" }
    }

    /// Resolves a template path: `count`, `last` (all fields of the newest reading), `last.F`,
    /// `mean.F`, `min.F`, `max.F`, `list.F` (all values, oldest first). A leading `window.` is
    /// accepted; `F` is everything after the second dot, so field names may contain dots.
    public func resolve(_ path: String) -> Result<JSON, PathError> {
        var p = Substring(path)
        if p.hasPrefix("window.") { p = p.dropFirst("window.".count) }
        let full = "window." + p
        func fail(_ message: String) -> Result<JSON, PathError> { .failure(PathError(path: full, message: message)) }
        let op: Substring, field: String?
        if let dot = p.firstIndex(of: ".") {
            op = p[..<dot]
            field = String(p[p.index(after: dot)...])
        } else {
            op = p
            field = nil
        }
        if let field, field.isEmpty { return fail("missing field name after '\(op).'") }
        switch op {
        case "count":
            if field != nil { return fail("'count' takes no field") }
            return .success(.number(Double(count)))
        case "last":
            guard let last else { return fail("the window is empty") }
            guard let field else { return .success(.object(last.fields)) }
            guard let v = last.fields[field] else { return fail("the last reading has no field '\(field)'") }
            return .success(v)
        case "list":
            guard let field else { return fail("'list' needs a field, e.g. window.list.temp_c") }
            return .success(.array(values(field)))
        case "mean", "min", "max":
            guard let field else { return fail("'\(op)' needs a field, e.g. window.\(op).temp_c") }
            let v = numbers(field)
            guard !v.isEmpty else {
                return fail(isEmpty ? "the window is empty" : "no numeric values of '\(field)' in the window (\(count) readings)")
            }
            switch op {
            case "mean": return .success(.number(v.reduce(0, +) / Double(v.count)))
            case "min": return .success(.number(v.min()!))
            default: return .success(.number(v.max()!))
            }
        default:
            return fail("unknown window value '\(op)' (expected count, last, mean, min, max or list)")
        }
    }
}
