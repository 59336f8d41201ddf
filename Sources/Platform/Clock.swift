import Glibc

// The one clock of the process: monotonic time for durations, deadlines and rate limits; wall time
// for timestamps in documents and logs.

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC: unaffected by clock changes, not by suspend).
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Monotonic time in seconds.
public func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) / 1e9 }

/// Monotonic time in milliseconds.
public func monotonicMilliseconds() -> Double { Double(monotonicNanoseconds()) / 1e6 }

/// Wall-clock time, seconds since the Unix epoch (reading timestamps).
public func wallClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// UTC time as `2026-11-29T14:27:01.123Z` (now, or `seconds` since the epoch).
public func isoTimestamp(_ seconds: Double? = nil) -> String {
    let now = seconds ?? wallClock()
    var t = time_t(now.rounded(.down))
    let ms = Int((now - Double(t)) * 1000) % 1000
    var tm = tm()
    gmtime_r(&t, &tm)
    func pad(_ v: Int32, _ n: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, n - s.count)) + s
    }
    return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ms), 3))Z"
}
