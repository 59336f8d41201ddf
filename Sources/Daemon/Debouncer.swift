/// Decides whether a route's decision is published: only when it differs from the last published
/// one (`onChange`), at most once per `minInterval` seconds, or both.
///
/// With both, a change inside the interval is held back, and the next decision after the interval
/// is published if it still differs from the last published one — so a lasting change always gets
/// out, a flapping one does not.
public struct Debouncer: Sendable, Equatable {
    public let onChange: Bool
    public let minInterval: Double?
    public private(set) var lastPublished: String?
    public private(set) var lastTime: Double?

    public init(onChange: Bool, minInterval: Double? = nil) {
        self.onChange = onChange
        self.minInterval = minInterval
    }

    /// True if `value` (a label, or text) should be published at `now` (monotonic seconds); records
    /// it as published when true.
    public mutating func shouldPublish(_ value: String, now: Double) -> Bool {
        if onChange, let lastPublished, lastPublished == value { return false }
        if let minInterval, let lastTime, now - lastTime < minInterval { return false }
        lastPublished = value
        lastTime = now
        return true
    }
}
