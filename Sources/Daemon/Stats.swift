import Glibc
import Mosquitto
import Platform
import Synchronization

public struct StatsSnapshot: Sendable {
    public var uptimeS: Double
    public var received: Int
    public var decided: Int
    public var errors: Int
    public var dropped: Int
    public var queue: Int
    public var p50: Double
    public var p95: Double
    public var tokensPerS: Double
    public var rssBytes: Int
    /// Plugin readings evicted from a full lane (newest kept).
    public var droppedReadings = 0
    /// Error documents left out by the rate limit.
    public var suppressedErrors = 0
    /// Answers waiting in the outbox for the broker, and answers the outbox had to drop.
    public var outboxQueued = 0
    public var outboxDropped = 0
}

/// Counters shared by the MQTT thread and the inference thread.
public final class Stats: Sendable {
    private struct State {
        var received = 0
        var decided = 0
        var errors = 0
        var dropped = 0
        var latencies: [Double] = []
        var next = 0
        var tokens = 0
        var engineMs = 0.0
        var droppedReadings = 0
        var suppressedErrors = 0
        var outboxDropped = 0
    }

    private let state = Mutex(State())
    private let started = monotonicNanoseconds()
    private static let window = 1024

    public init() {}

    public func received(_ n: Int = 1) { state.withLock { $0.received += n } }
    public func error() { state.withLock { $0.errors += 1 } }
    public func dropped() { state.withLock { $0.dropped += 1 } }
    public func droppedReading() { state.withLock { $0.droppedReadings += 1 } }
    public func suppressedError() { state.withLock { $0.suppressedErrors += 1 } }
    public func outboxDropped(_ n: Int = 1) { state.withLock { $0.outboxDropped += n } }

    public func decided(latencyMs: Double, tokens: Int, engineMs: Double) {
        state.withLock { s in
            s.decided += 1
            s.tokens += tokens
            s.engineMs += engineMs
            if s.latencies.count < Stats.window {
                s.latencies.append(latencyMs)
            } else {
                s.latencies[s.next] = latencyMs
                s.next = (s.next + 1) % Stats.window
            }
        }
    }

    /// Latency percentiles are over the last 1024 decisions; tokens/s is prompt + generated
    /// tokens per second of engine time since start.
    public func snapshot(queue: Int, outbox: Int = 0) -> StatsSnapshot {
        state.withLock { s in
            let sorted = s.latencies.sorted()
            func pct(_ p: Double) -> Double {
                guard !sorted.isEmpty else { return 0 }
                return sorted[min(sorted.count - 1, Int((p * Double(sorted.count - 1)).rounded()))]
            }
            return StatsSnapshot(
                uptimeS: Double(monotonicNanoseconds() - started) / 1e9,
                received: s.received, decided: s.decided, errors: s.errors, dropped: s.dropped, queue: queue,
                p50: pct(0.5), p95: pct(0.95),
                tokensPerS: s.engineMs > 0 ? Double(s.tokens) / (s.engineMs / 1000) : 0,
                rssBytes: residentBytes(), droppedReadings: s.droppedReadings, suppressedErrors: s.suppressedErrors,
                outboxQueued: outbox, outboxDropped: s.outboxDropped)
        }
    }
}

/// Resident set size from `/proc/self/statm` (second field, pages).
public func residentBytes() -> Int {
    guard let text = try? readSmallTextFile("/proc/self/statm") else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// `MemAvailable` from `/proc/meminfo`, bytes.
public func availableMemoryBytes() -> Int? {
    guard let text = try? readSmallTextFile("/proc/meminfo") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
    }
    return nil
}
