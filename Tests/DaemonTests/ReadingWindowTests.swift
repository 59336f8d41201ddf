import Daemon
import JSONValue
import SensorPlugins
import Testing
import TestKit

@Suite struct ReadingWindowTests {
    func reading(_ t: Double, _ fields: JSONObject) -> Reading {
        Reading(topicSuffix: "", fields: fields, timestamp: t)
    }

    func value(_ w: ReadingWindow, _ path: String) -> JSON? {
        try? w.resolve(path).get()
    }

    func problem(_ w: ReadingWindow, _ path: String) -> String? {
        if case .failure(let e) = w.resolve(path) { return e.description }
        return nil
    }

    @Test func lastNReadings() {
        var w = ReadingWindow(maxCount: 3)
        for (i, t) in [20.0, 22, 30, 26].enumerated() {
            w.append(reading(Double(i), ["temp_c": .number(t), "state": "ok"]))
        }
        #expect(w.count == 3)
        #expect(value(w, "window.count") == 3)
        #expect(value(w, "count") == 3)
        #expect(value(w, "window.last.temp_c") == 26)
        #expect(value(w, "window.mean.temp_c") == 26)
        #expect(value(w, "window.min.temp_c") == 22)
        #expect(value(w, "window.max.temp_c") == 30)
        #expect(value(w, "window.list.temp_c") == [22, 30, 26])
        #expect(value(w, "window.last") == .object(["temp_c": 26, "state": "ok"]))
        #expect(value(w, "window.last.state") == "ok")
    }

    @Test func timeSpan() {
        var w = ReadingWindow(span: 10)
        w.append(reading(100, ["v": 1]))
        w.append(reading(105, ["v": 2]))
        w.append(reading(112, ["v": 3]))
        #expect(w.readings.map(\.timestamp) == [105, 112])
        w.prune(now: 200)
        #expect(w.isEmpty)
        #expect(problem(w, "window.mean.v") == "window.mean.v: the window is empty")
        #expect(value(w, "window.count") == 0)
    }

    @Test func countAndSpanTogetherAndManyAppends() {
        var w = ReadingWindow(maxCount: 100, span: 50)
        for i in 0..<10_000 { w.append(reading(Double(i), ["v": .number(Double(i))])) }
        #expect(w.count == 51)
        #expect(w.min("v") == 9949)
        #expect(w.max("v") == 9999)
        var c = ReadingWindow(maxCount: 2)
        for i in 0..<1000 { c.append(reading(Double(i), ["v": .number(Double(i))])) }
        #expect(c.readings.map(\.timestamp) == [998, 999])
    }

    @Test func pathErrorsSayWhatIsWrong() {
        var w = ReadingWindow(maxCount: 5)
        #expect(problem(w, "window.last.temp_c") == "window.last.temp_c: the window is empty")
        w.append(reading(1, ["temp_c": 20, "state": "ok"]))
        w.append(reading(2, ["state": "hot"]))
        #expect(problem(w, "window.last.temp_c") == "window.last.temp_c: the last reading has no field 'temp_c'")
        #expect(value(w, "window.mean.temp_c") == 20)
        #expect(problem(w, "window.mean.state") == "window.mean.state: no numeric values of 'state' in the window (2 readings)")
        #expect(problem(w, "window.median.temp_c") == "window.median.temp_c: unknown window value 'median' (expected count, last, mean, min, max or list)")
        #expect(problem(w, "window.mean") == "window.mean: 'mean' needs a field, e.g. window.mean.temp_c")
        #expect(problem(w, "window.count.x") == "window.count.x: 'count' takes no field")
        #expect(problem(w, "window.max.") == "window.max.: missing field name after 'max.'")
        #expect(value(w, "window.list.temp_c") == [20])
    }

    @Test func fieldNamesWithDots() {
        var w = ReadingWindow(maxCount: 2)
        w.append(reading(1, ["a.b": 4]))
        #expect(value(w, "window.max.a.b") == 4)
    }
}

@Suite struct DebouncerTests {
    @Test func onChangeOnly() {
        var d = Debouncer(onChange: true)
        #expect([("ok", 0.0), ("ok", 1), ("hot", 2), ("hot", 3), ("ok", 4)].map { d.shouldPublish($0.0, now: $0.1) }
            == [true, false, true, false, true])
    }

    @Test func atMostOncePerInterval() {
        var d = Debouncer(onChange: false, minInterval: 10)
        #expect([0.0, 5, 10, 11, 25].map { d.shouldPublish("ok", now: $0) } == [true, false, true, false, true])
    }

    @Test func bothHoldBackAFlapButLetALastingChangeThrough() {
        var d = Debouncer(onChange: true, minInterval: 10)
        let decisions = [("ok", 0.0),   // first: published
                         ("hot", 2),    // inside the interval: held back
                         ("ok", 4),     // flapped back: nothing to say
                         ("ok", 12),    // same as the last published one
                         ("hot", 13)]   // a lasting change, after the interval: published
        #expect(decisions.map { d.shouldPublish($0.0, now: $0.1) } == [true, false, false, false, true])
        #expect(d.lastPublished == "hot")
    }

    @Test func aWindowHoldsAtMostMaxBytes() {
        var w = ReadingWindow(maxCount: 10_000)
        let big = String(repeating: "x", count: 10_000)
        for i in 0..<1000 { w.append(Reading(topicSuffix: "a", fields: ["s": .string(big), "i": .number(Double(i))], timestamp: Double(i))) }
        #expect(w.bytes <= ReadingWindow.maxBytes && w.count >= 10 && w.count < 20, "\(w.count) readings, \(w.bytes) bytes")
        #expect(w.last?.fields["i"] == .number(999), "the newest readings are kept")
        // Small readings: the count limit applies as before.
        var small = ReadingWindow(maxCount: 100)
        for i in 0..<1000 { small.append(Reading(topicSuffix: "a", fields: ["t": .number(Double(i))], timestamp: Double(i))) }
        #expect(small.count == 100 && small.bytes < ReadingWindow.maxBytes)
    }
}
