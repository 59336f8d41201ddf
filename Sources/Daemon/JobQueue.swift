import DaemonConfig
import Glibc

/// The bounded queue between the inputs (MQTT, plugin readings) and the inference thread, fair
/// between routes.
///
/// Each route has its own lane. Taking: decide lanes always before generate lanes, so a burst of
/// long generations cannot starve decisions (DESIGN.md §8 "fairness"); among lanes of a kind,
/// round-robin by route, so one busy route gets one turn of the inference thread per turn of
/// every other. Queuing when the queue is full (`capacity` counts every lane): the route with the
/// longest lane pays — if that is another route, its oldest job is evicted to make room (a
/// flooding source loses its own jobs, never another route's); if it is the pushing route itself,
/// `reject` refuses the new job and `drop_oldest` evicts the route's own oldest. Plugin readings
/// always keep the newest (their oldest is evicted). The caller answers every refused or evicted
/// job.
public final class JobQueue: @unchecked Sendable {
    // @unchecked: all state is guarded by `mutex`.
    private struct Lane {
        var jobs: [Job] = []
        var head = 0
        var count: Int { jobs.count - head }

        mutating func popFirst() -> Job {
            let j = jobs[head]
            head += 1
            if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            return j
        }
    }

    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var lanes: [String: Lane] = [:]
    /// Routes with queued jobs, per kind, in round-robin order (the next to serve first).
    private var decideRing: [String] = []
    private var generateRing: [String] = []
    private var total = 0
    private var closed = false
    private var finishing = false
    private var capacity: Int
    private var policy: OverflowPolicy

    public init(capacity: Int, policy: OverflowPolicy) {
        self.capacity = capacity
        self.policy = policy
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    public enum PushResult: Sendable {
        case queued
        /// The queue was full (reject) or closed; the job was not queued.
        case rejected(Job)
        /// The job was queued and this older one evicted (its own route's, or the longest lane's).
        case evicted(Job)
    }

    public func reconfigure(capacity: Int, policy: OverflowPolicy) {
        locked {
            self.capacity = capacity
            self.policy = policy
        }
    }

    public var count: Int { locked { total } }

    /// Jobs queued for one route.
    public func count(route: String) -> Int { locked { lanes[route]?.count ?? 0 } }

    public func push(_ job: Job) -> PushResult {
        let result: PushResult = locked {
            if closed { return .rejected(job) }
            var evicted: Job?
            if total >= capacity {
                let own = job.route.name
                // The longest lane; the pushing route's own on a tie (it is the one flooding).
                var longest = own
                var longestCount = lanes[own]?.count ?? 0
                for (name, lane) in lanes where lane.count > longestCount {
                    longest = name
                    longestCount = lane.count
                }
                if longest == own && (policy == .reject && !job.fromReading || longestCount == 0) {
                    return .rejected(job)
                }
                evicted = popLocked(route: longest)
            }
            appendLocked(job)
            return evicted.map { .evicted($0) } ?? .queued
        }
        pthread_cond_signal(&cond)
        return result
    }

    private func appendLocked(_ job: Job) {
        let name = job.route.name
        if lanes[name, default: Lane()].count == 0 {
            if job.route.task == .decide { decideRing.append(name) } else { generateRing.append(name) }
        }
        lanes[name, default: Lane()].jobs.append(job)
        total += 1
    }

    /// The oldest job of a route's lane (nil if empty); keeps the rings in step.
    private func popLocked(route: String) -> Job? {
        guard var lane = lanes[route], lane.count > 0 else { return nil }
        let job = lane.popFirst()
        total -= 1
        if lane.count == 0 {
            lanes[route] = nil
            decideRing.removeAll { $0 == route }
            generateRing.removeAll { $0 == route }
        } else {
            lanes[route] = lane
        }
        return job
    }

    /// Blocks until a job is available (decide lanes first) or the queue is closed and empty.
    public func pop() -> Job? { popBatch(max: 1)?.first }

    /// Like `pop`; when the job is a decide job, also takes up to `max - 1` more queued jobs of
    /// the same route (same configuration), oldest first, to be decided together. The route then
    /// goes to the back of the round-robin.
    public func popBatch(max: Int) -> [Job]? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while true {
            if let route = decideRing.first {
                decideRing.removeFirst()
                var batch: [Job] = []
                while batch.count < Swift.max(1, max), let j = popLocked(route: route) { batch.append(j) }
                if lanes[route] != nil { decideRing.append(route) }
                return batch
            }
            if let route = generateRing.first {
                generateRing.removeFirst()
                let j = popLocked(route: route)!
                if lanes[route] != nil { generateRing.append(route) }
                return [j]
            }
            if closed || finishing { return nil }
            pthread_cond_wait(&cond, &mutex)
        }
    }

    /// Still takes jobs, but `pop` returns nil once the queue is empty (the worker's drain).
    public func finishWhenEmpty() {
        locked { finishing = true }
        pthread_cond_broadcast(&cond)
    }

    /// Refuses new jobs; `pop` returns the remaining ones, then nil.
    public func close() {
        locked { closed = true }
        pthread_cond_broadcast(&cond)
    }

    /// Removes and returns every queued job, oldest first.
    public func removeAll() -> [Job] {
        locked {
            var out: [Job] = []
            for name in Array(lanes.keys) {
                while let j = popLocked(route: name) { out.append(j) }
            }
            return out.sorted { $0.id < $1.id }
        }
    }
}
