import Glibc
import Platform

/// A test step that could not be carried out (set-up, not an expectation).
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Polls `condition` every 10 ms until it holds or the timeout passes.
public func poll(timeoutS: Double, _ condition: () -> Bool) -> Bool {
    let end = monotonicSeconds() + timeoutS
    while monotonicSeconds() < end {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
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
