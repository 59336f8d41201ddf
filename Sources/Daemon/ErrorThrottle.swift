import Synchronization

/// At most one error document per key — (route, error code) or (plugin, error code) — per
/// `interval` seconds; the ones in between are counted and the next document sent carries their
/// number (`"suppressed": N`). A source that repeats one problem a thousand times a second costs a
/// counter increment per repeat, not a document and a log line.
final class ErrorThrottle: Sendable {
    private struct Entry {
        var lastSent: Double
        var suppressed: Int
    }

    let interval: Double
    /// Distinct keys kept (routes × codes and plugins × codes are bounded by the config; this
    /// bounds it anyway).
    static let maxKeys = 4096
    private let state = Mutex<[String: Entry]>([:])

    init(interval: Double = 60) { self.interval = interval }

    /// Whether a document for `key` goes out now, and how many were suppressed before it.
    func admit(_ key: String, now: Double) -> (send: Bool, suppressedBefore: Int) {
        state.withLock { m in
            if var e = m[key], now - e.lastSent < interval {
                e.suppressed += 1
                m[key] = e
                return (false, 0)
            }
            let before = m[key]?.suppressed ?? 0
            if m[key] == nil && m.count >= Self.maxKeys {
                m = m.filter { now - $0.value.lastSent < interval }
                if m.count >= Self.maxKeys { m.removeAll() }
            }
            m[key] = Entry(lastSent: now, suppressed: 0)
            return (true, before)
        }
    }
}
