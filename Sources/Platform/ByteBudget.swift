import Glibc

/// A bound on bytes handed from a producer thread to a slower consumer: the producer `take`s
/// before it hands bytes on (waiting while the budget is spent), the consumer `give`s them back
/// when it has dealt with them. Used between a child's pipe reader and the plugin that parses its
/// lines, so a child that writes faster than it is read blocks in its own `write()` (its pipe
/// fills) instead of growing the daemon's memory.
public final class ByteBudget: @unchecked Sendable {
    // @unchecked: all state is guarded by `mutex`.
    public let limit: Int
    private var used = 0
    private var open = false
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Bytes handed on and not given back yet.
    public var inUse: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return used
    }

    /// Waits up to `timeoutMs` for room; true when the producer may read more (or the budget is
    /// open). Call before reading, then `charge` what was read.
    public func waitForRoom(timeoutMs: Int) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if open || used < limit { return true }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ns = ts.tv_nsec + timeoutMs % 1000 * 1_000_000
        var deadline = timespec(tv_sec: ts.tv_sec + timeoutMs / 1000 + ns / 1_000_000_000, tv_nsec: ns % 1_000_000_000)
        while !open && used >= limit {
            if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT { break }
        }
        return open || used < limit
    }

    public func charge(_ n: Int) {
        pthread_mutex_lock(mutex)
        used += n
        pthread_mutex_unlock(mutex)
    }

    public func give(_ n: Int) {
        pthread_mutex_lock(mutex)
        used = max(0, used - n)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    /// No more limit (the consumer is gone: let the reader drain to end of file).
    public func openUp() {
        pthread_mutex_lock(mutex)
        open = true
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }
}
