import Glibc

/// A pthread condition variable with its mutex, for waiting on a predicate with a timeout
/// (CLOCK_MONOTONIC, so a clock change neither shortens nor stretches a wait).
final class Condition: @unchecked Sendable {
    // @unchecked: the pthread objects are only used through their own locking.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func broadcast() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Waits until `predicate` holds or `seconds` pass; returns the predicate's last value.
    /// The predicate is re-checked after every broadcast (it reads its own locked state).
    func wait(seconds: Double, _ predicate: () -> Bool) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let forever = !seconds.isFinite || seconds > 1e9
        let ns = forever ? 0 : Int(max(0, seconds) * 1e9)
        var deadline = timespec(tv_sec: now.tv_sec + ns / 1_000_000_000, tv_nsec: now.tv_nsec + ns % 1_000_000_000)
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if predicate() { return true }
            if forever {
                pthread_cond_wait(cond, mutex)
            } else if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT {
                return predicate()
            }
        }
    }
}
