import BitNet
@testable import Daemon
import DaemonConfig
import Foundation
import Glibc
import SensorPlugins
import Synchronization
import Testing
import TestKit

/// A real engine behind a gate: the test holds the inference thread while jobs queue up, so
/// what gets batched does not depend on timing. Records the size of every decide call.
final class GatedEngine: InferenceBackend, @unchecked Sendable {
    let engine: Engine
    let gateOpen = Atomic<Bool>(true)
    let batches = Mutex<[Int]>([])
    /// Every result by prompt, at full precision (the payload rounds probabilities).
    let results = Mutex<[String: DecideResult]>([:])

    init(_ engine: Engine) { self.engine = engine }

    var modelName: String { engine.modelName }

    private func passGate() { while !gateOpen.load(ordering: .relaxed) { usleep(1000) } }

    func decide(prompt: String, labels: [String], cacheKey: String) throws -> DecideResult {
        passGate()
        batches.withLock { $0.append(1) }
        let r = try engine.decide(prompt: prompt, labels: labels, cacheKey: cacheKey)
        results.withLock { $0[prompt] = r }
        return r
    }

    func decide(batch: [Engine.DecideRequest], cacheKey: String) -> [Result<DecideResult, Error>] {
        passGate()
        batches.withLock { $0.append(batch.count) }
        let out = engine.decide(batch: batch, cacheKey: cacheKey)
        for (q, r) in zip(batch, out) { if case .success(let d) = r { results.withLock { $0[q.prompt] = d } } }
        return out
    }

    func generate(prompt: String, options: GenerateOptions, onText: (String) -> Bool) throws -> GenerateResult {
        passGate()
        return try engine.generate(prompt: prompt, options: options, onText: onText)
    }

    func invalidatePrefixCache() { engine.invalidatePrefixCache() }
}

@Suite struct BatchingTests {
    func job(_ id: UInt64, _ route: RouteConfig) -> Job {
        Job(id: id, route: route, prompt: "p\(id)", inputTopic: "t", replyTopic: "r", isResponse: false,
            correlationData: nil, receivedAt: 0, expiresAt: nil)
    }

    @Test func popBatchTakesQueuedDecideJobsOfTheSameRoute() throws {
        let config = try testConfig()
        let d = config.routes.first { $0.name == "d" }!, g = config.routes.first { $0.name == "g" }!
        var other = d
        other.name = "d2"
        let q = JobQueue(capacity: 64, policy: .reject)
        for (i, r) in [d, other, d, g, d, d, other, d].enumerated() { _ = q.push(job(UInt64(i), r)) }
        #expect(q.popBatch(max: 3)?.map(\.id) == [0, 2, 4])
        #expect(q.popBatch(max: 3)?.map(\.id) == [1, 6])
        #expect(q.popBatch(max: 3)?.map(\.id) == [5, 7])
        #expect(q.popBatch(max: 3)?.map(\.id) == [3], "generate jobs are never batched")
        #expect(q.count == 0)
        for i in 0..<3 { _ = q.push(job(UInt64(10 + i), d)) }
        #expect(q.popBatch(max: 1)?.map(\.id) == [10], "batch_max 1 takes one job at a time")
    }

    @Test func queuedDecisionsAreDecidedTogetherWithTheSameResults() throws {
        let config = try testConfig("""
        queue: {size: 64, batch_max: 8}
        """, routes: """
        routes:
          - name: d
            topic: sensors/+/t
            prompt: "Greenhouse. Decide what to do. Reading from {{topic.1}}: temperature {{t}} C. Action:"
            labels: [water, open the vents, nothing]
        """)
        #expect(config.queue.batchMax == 8)
        let engine = try Engine(modelPath: Fixture.model, options: EngineOptions(threads: 1, contextLength: 256))
        let backend = GatedEngine(engine)
        backend.gateOpen.store(false, ordering: .relaxed)
        let t = RecordingTransport()
        let core = DaemonCore(config: config, backend: backend, transport: t)
        core.startWorker()
        let temps = (0..<10).map { "\(15.0 + Double($0) * 2.5)" }
        core.handle(message("sensors/s0/t", #"{"t":"\#(temps[0])"}"#))  // taken by the worker, held at the gate
        _ = poll(timeoutS: 2) { core.queue.count == 0 }
        for (i, v) in temps.enumerated().dropFirst() { core.handle(message("sensors/s\(i)/t", #"{"t":"\#(v)"}"#)) }
        backend.gateOpen.store(true, ordering: .relaxed)
        let sent = t.wait(for: temps.count)
        try #require(sent.count == temps.count)
        #expect(backend.batches.withLock { $0 } == [1, 8, 1])

        // Each decision as the engine gives it alone, without any cache.
        let alone = try Engine(modelPath: Fixture.model, options: EngineOptions(threads: 2))
        alone.tuning.prefixCache = false
        for (i, v) in temps.enumerated() {
            let doc = try #require(sent.first { $0.json["input_topic"] == .string("sensors/s\(i)/t") }?.json)
            let prompt = "Greenhouse. Decide what to do. Reading from s\(i): temperature \(v) C. Action:"
            let r = try alone.decide(prompt: prompt, labels: ["water", "open the vents", "nothing"])
            let got = try #require(backend.results.withLock { $0[prompt] })
            #expect(got.logScores == r.logScores, "reading \(i)")
            #expect(got.probabilities == r.probabilities, "reading \(i)")
            #expect(doc["label"] == .string(r.labels[r.best]))
        }
        core.beginShutdown(drainTimeoutS: 1)
        core.finishShutdown()
    }
}
