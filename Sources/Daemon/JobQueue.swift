import DaemonConfig
import Glibc

/// The bounded queue between MQTT and the inference thread.
///
/// Two lanes: `decide` jobs are always taken before `generate` jobs, so a burst of long
/// generations cannot starve decisions (DESIGN.md §8 "fairness"). `capacity` counts both lanes.
/// When full, `reject` refuses the new job and `drop_oldest` evicts the oldest queued job; the
/// caller answers the refused or evicted job with an error.
public final class JobQueue: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var decide: [Job] = []
    private var generate: [Job] = []
    private var decideHead = 0
    private var generateHead = 0
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
        /// The job was queued and this older one evicted (drop_oldest).
        case evicted(Job)
    }

    public func reconfigure(capacity: Int, policy: OverflowPolicy) {
        locked {
            self.capacity = capacity
            self.policy = policy
        }
    }

    private var countLocked: Int { decide.count - decideHead + generate.count - generateHead }

    public var count: Int { locked { countLocked } }

    public func push(_ job: Job) -> PushResult {
        let result: PushResult = locked {
            if closed { return .rejected(job) }
            var evicted: Job?
            if countLocked >= capacity {
                if policy == .reject { return .rejected(job) }
                evicted = popOldestLocked()
            }
            if job.route.task == .decide { decide.append(job) } else { generate.append(job) }
            return evicted.map { .evicted($0) } ?? .queued
        }
        pthread_cond_signal(&cond)
        return result
    }

    private func popOldestLocked() -> Job? {
        let d = decideHead < decide.count ? decide[decideHead] : nil
        let g = generateHead < generate.count ? generate[generateHead] : nil
        if let d, g == nil || d.id < g!.id {
            decideHead += 1
            compact()
            return d
        }
        if g != nil {
            generateHead += 1
            compact()
            return g
        }
        return nil
    }

    private func compact() {
        if decideHead > 64 && decideHead * 2 > decide.count {
            decide.removeFirst(decideHead)
            decideHead = 0
        }
        if generateHead > 64 && generateHead * 2 > generate.count {
            generate.removeFirst(generateHead)
            generateHead = 0
        }
    }

    /// Blocks until a job is available (decide lane first) or the queue is closed and empty.
    public func pop() -> Job? { popBatch(max: 1)?.first }

    /// Like `pop`, and when the job is a decide job, also takes up to `max - 1` more queued
    /// decide jobs of the same route (same configuration), oldest first, to be decided together.
    public func popBatch(max: Int) -> [Job]? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while true {
            if decideHead < decide.count {
                let j = decide[decideHead]
                decideHead += 1
                var batch = [j]
                var i = decideHead
                while batch.count < max && i < decide.count {
                    if decide[i].route == j.route {
                        batch.append(decide.remove(at: i))
                    } else {
                        i += 1
                    }
                }
                compact()
                return batch
            }
            if generateHead < generate.count {
                let j = generate[generateHead]
                generateHead += 1
                compact()
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

    /// Removes and returns every queued job.
    public func removeAll() -> [Job] {
        locked {
            var out: [Job] = []
            while let j = popOldestLocked() { out.append(j) }
            return out
        }
    }
}
