#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A fixed pool of OS threads for the matrix kernels (DESIGN.md §3, issue "fast kernels").
///
/// `parallelFor` splits a range among the calling thread and the workers and returns when all are
/// done. Dispatch is lock-free on the hot path: workers spin briefly on a generation counter and
/// only then sleep on a condition variable, so back-to-back matmuls of one token cost a few
/// microseconds each while an idle daemon does not burn CPU. Nothing is allocated per call.
/// One `parallelFor` at a time (the engine serialises its calls); never call it from a worker.
public final class ThreadPool: @unchecked Sendable {
    public let threadCount: Int

    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var threads: [pthread_t] = []

    // The job of the current generation; written by the caller before bumping `generation`.
    private var jobBody: ((Int) -> Void)?
    private var jobParts = 0

    /// Spin iterations before a worker sleeps (~50–100 µs).
    private let spinLimit = 20_000

    /// `threads` ≤ 0 means one per online CPU.
    public init(threads: Int) {
        let n = threads > 0 ? threads : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        threadCount = n
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
        for i in 1..<n {
            let ctx = Unmanaged.passRetained(WorkerContext(pool: self, index: i)).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { raw in
                let ctx = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                ctx.pool.workerLoop(ctx.index)
                return nil
            }, ctx)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            self.threads.append(tid)
        }
    }

    deinit {
        stopping.store(true, ordering: .releasing)
        pthread_mutex_lock(&mutex)
        generation.wrappingAdd(1, ordering: .releasing)
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
        for t in threads { pthread_join(t, nil) }
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&cond)
    }

    private final class WorkerContext {
        let pool: ThreadPool
        let index: Int
        init(pool: ThreadPool, index: Int) {
            self.pool = pool
            self.index = index
        }
    }

    /// Runs `body(part)` for part in 0..<threadCount, part 0 on the calling thread.
    public func run(_ body: (Int) -> Void) {
        if threadCount == 1 {
            body(0)
            return
        }
        withoutActuallyEscaping(body) { escaping in
            jobBody = escaping
            jobParts = threadCount
            pending.store(threadCount - 1, ordering: .relaxed)
            pthread_mutex_lock(&mutex)
            generation.wrappingAdd(1, ordering: .releasing)
            pthread_cond_broadcast(&cond)
            pthread_mutex_unlock(&mutex)
            escaping(0)
            var spins = 0
            while pending.load(ordering: .acquiring) != 0 {
                spins += 1
                if spins > spinLimit { sched_yield() }
            }
            jobBody = nil
        }
    }

    /// Splits `0..<count` into contiguous chunks (multiples of `granularity`) and runs
    /// `body(start, end)` for each non-empty chunk in parallel.
    public func parallelFor(_ count: Int, granularity: Int = 1, _ body: (Int, Int) -> Void) {
        parallelChunks(count, granularity: granularity) { _, start, end in body(start, end) }
    }

    /// Like `parallelFor`, also passing the part index (0..<threadCount) so a body can use
    /// per-thread scratch memory.
    public func parallelChunks(_ count: Int, granularity: Int = 1, _ body: (Int, Int, Int) -> Void) {
        if count <= 0 { return }
        let g = max(1, granularity)
        let units = (count + g - 1) / g
        let parts = min(threadCount, units)
        if parts <= 1 {
            body(0, 0, count)
            return
        }
        run { part in
            if part >= parts { return }
            let u0 = units * part / parts
            let u1 = units * (part + 1) / parts
            let start = u0 * g
            let end = min(count, u1 * g)
            if start < end { body(part, start, end) }
        }
    }

    private func workerLoop(_ index: Int) {
        // Start from generation 0, not from the current value: a job may have been posted
        // before this thread got to run, and it must still take part in it.
        var seen = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                spins += 1
                if spins > spinLimit {
                    pthread_mutex_lock(&mutex)
                    while generation.load(ordering: .acquiring) == seen {
                        pthread_cond_wait(&cond, &mutex)
                    }
                    pthread_mutex_unlock(&mutex)
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if stopping.load(ordering: .acquiring) { return }
            if let body = jobBody, index < jobParts {
                body(index)
            }
            pending.wrappingSubtract(1, ordering: .releasing)
        }
    }
}
