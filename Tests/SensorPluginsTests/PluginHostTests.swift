import Dispatch
import Platform
import SensorPlugins
import Synchronization
import Testing
import TestKit

/// A sampled plugin whose samples are scripted by the test.
final class FakeSampled: SampledSensorPlugin {
    let settings: PluginSettings
    let samples = Mutex(0)
    let behaviour: @Sendable (Int) -> PluginSample

    init(name: String, interval: Double, _ behaviour: @escaping @Sendable (Int) -> PluginSample) {
        settings = PluginSettings(id: "fake", name: name, interval: interval)
        self.behaviour = behaviour
    }

    func sample(at time: Double) -> PluginSample {
        let n = samples.withLock { $0 += 1; return $0 }
        return behaviour(n)
    }
}

@Suite struct PluginHostTests {
    @Test func samplesAtOnceThenEveryIntervalAndStopsCleanly() async throws {
        let plugin = FakeSampled(name: "counter", interval: 0.05) { n in
            PluginSample(readings: [Reading(topicSuffix: "c", fields: ["n": .number(Double(n))], timestamp: 0)])
        }
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [plugin], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { rec.readings.count >= 4 })
        host.stop()
        let count = rec.readings.count
        #expect(rec.readings.prefix(4).map { $0.fields["n"] } == [1, 2, 3, 4])
        #expect(rec.entries.allSatisfy { $0.plugin == "counter" })
        #expect(rec.logs.first == "plugin counter (fake): sampling every 0.05 s")
        // Nothing after stop() returned.
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(rec.readings.count == count)
        host.stop()
    }

    /// The host passes every problem on, in order; rate limiting per (plugin, code) is the
    /// daemon's (`PublisherTests`), so the host needs no clock for it.
    @Test func everyErrorIsPassedOn() async throws {
        let plugin = FakeSampled(name: "flaky", interval: 0.02) { n in
            PluginSample(errors: [PluginError("read_failed", "gone"), PluginError("bad_value", "value \(n % 3)")])
        }
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [plugin], onReading: rec.onReading, onError: rec.onError)
        #expect(await poll(timeout: 10) { plugin.samples.withLock { $0 } >= 10 })
        host.stop()
        // A sample taken while the host stops may have its problems dropped by the stop.
        let samples = plugin.samples.withLock { $0 }
        #expect((samples - 1...samples).contains(rec.errors.filter { $0.code == "read_failed" }.count))
        #expect((samples - 1...samples).contains(rec.errors.filter { $0.code == "bad_value" }.count))
    }

    @Test func aStuckPluginBlocksNeitherStartNorStopNorTheOthers() async throws {
        let release = DispatchSemaphore(value: 0)
        let stuck = FakeSampled(name: "stuck", interval: 0.05) { _ in
            release.wait()
            return PluginSample(readings: [Reading(topicSuffix: "", fields: ["late": true], timestamp: 0)])
        }
        let ok = FakeSampled(name: "ok", interval: 0.05) { _ in
            PluginSample(readings: [Reading(topicSuffix: "", fields: ["x": 1], timestamp: 0)])
        }
        let rec = Recorder()
        let host = PluginHost(logger: rec.logger)
        host.start(plugins: [stuck, ok], onReading: rec.onReading, onError: rec.onError)
        // start() returned although the stuck sampler cannot finish before `release` (signalled
        // only below): had it waited, this test would hang here. The others sample meanwhile.
        #expect(await poll(timeout: 10) { rec.readings.count >= 3 })
        #expect(stuck.samples.withLock { $0 } == 1, "the stuck sampler is still in its first sample")
        host.stop()
        // stop() returned too, with the stuck sample still blocked (an event, not a stopwatch).
        #expect(stuck.samples.withLock { $0 } == 1)
        release.signal()
        try await Task.sleep(nanoseconds: 100_000_000)
        // The stuck sample finished after stop(): its reading is dropped.
        #expect(rec.entries.allSatisfy { $0.plugin == "ok" })
    }

    @Test func stopWithoutStartAndEmptyHosts() {
        PluginHost().stop()
        let host = PluginHost()
        host.start(plugins: [], onReading: { _, _ in }, onError: { _, _ in })
        host.stop()
    }
}
