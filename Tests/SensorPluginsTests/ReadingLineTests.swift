import JSONValue
import SensorPlugins
import Testing

@Suite struct ReadingLineTests {
    func parse(_ s: String, _ format: ReadingLine.Format = .auto, suffix: String = "") throws(ReadingLine.Problem) -> Reading? {
        try ReadingLine.parse(Array(s.utf8), format: format, defaultSuffix: suffix, time: 7)
    }

    func problem(_ s: String, _ format: ReadingLine.Format = .auto) -> String? {
        do throws(ReadingLine.Problem) {
            _ = try parse(s, format)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func envelopeAndFlatObjects() throws {
        #expect(try parse(#"{"topic": "a/b", "fields": {"x": 1.5, "s": "t", "ok": false}, "ts": 12.25}"#)
            == Reading(topicSuffix: "a/b", fields: ["x": 1.5, "s": "t", "ok": false], timestamp: 12.25))
        #expect(try parse(#"{"fields": {"x": 1}}"#, suffix: "dflt") == Reading(topicSuffix: "dflt", fields: ["x": 1], timestamp: 7))
        #expect(try parse(#"  {"x": 1, "ts": 5}  "#) == Reading(topicSuffix: "", fields: ["x": 1, "ts": 5], timestamp: 7))
        #expect(try parse("   ") == nil)
        #expect(try parse("") == nil)
    }

    @Test func badJSONLinesSayWhy() {
        #expect(problem("[1]", .json) == "expected a JSON object, got an array")
        #expect(problem("{}") == "a reading needs at least one field")
        #expect(problem(#"{"fields": {}}"#) == "a reading needs at least one field")
        #expect(problem(#"{"fields": 3}"#) == "'fields' must be an object, got a number")
        #expect(problem(#"{"fields": {"x": 1}, "unit": "C"}"#) == "unknown key 'unit' in a reading (allowed: topic, fields, ts)")
        #expect(problem(#"{"fields": {"x": null}}"#) == "field 'x' is null; fields must be numbers, strings or booleans")
        #expect(problem(#"{"x": {"y": 1}}"#) == "field 'x' is an object; fields must be numbers, strings or booleans")
        #expect(problem(#"{"topic": 5, "fields": {"x": 1}}"#) == "'topic' must be a string, got a number")
        #expect(problem(#"{"topic": "/abs", "fields": {"x": 1}}"#) == "'topic': a topic suffix cannot have empty levels or a leading or trailing '/', got '/abs'")
        #expect(problem(#"{"ts": "now", "fields": {"x": 1}}"#) == "'ts' must be a positive number of seconds since the epoch, got \"now\"")
        #expect(problem(#"{"x": 1"#) == "not JSON: unexpected end of input in an object at byte 7")
        #expect(problem("x=1", .json) == "not JSON: unexpected character at byte 0")
        #expect(problem("[1]") == "expected key=value, got '[1]'")
        #expect(throws: ReadingLine.Problem("line is not valid UTF-8")) {
            try ReadingLine.parse([0x7B, 0xFF, 0x7D], time: 0)
        }
    }

    @Test func keyValueLines() throws {
        let r = try #require(try parse(#"t=21.5 n=-3 on=true off=false word=abc q="a \"b\" c" e= hex=0x10 inf=inf"#))
        #expect(r.fields == ["t": 21.5, "n": -3, "on": true, "off": false, "word": "abc", "q": "a \"b\" c", "e": "",
                             "hex": 16, "inf": "inf"])
        #expect(problem("a=1 b") == "expected key=value, got 'b'")
        #expect(problem("=1") == "a field name cannot be empty (a '=' without a key)")
        #expect(problem(#"a="open"#) == "unterminated quoted value of 'a'")
        #expect(problem(#"a="x"y=1"#) == "expected a space after the quoted value of 'a'")
        #expect(problem("{\"a\": 1}", .keyValue) == "expected key=value, got '{\"a\":'")
    }

    @Test func topicSuffixRules() {
        #expect(ReadingLine.topicSuffixProblem("") == nil)
        #expect(ReadingLine.topicSuffixProblem("thermal_zone0") == nil)
        #expect(ReadingLine.topicSuffixProblem("a/b/c") == nil)
        #expect(ReadingLine.topicSuffixProblem("a//b") != nil)
        #expect(ReadingLine.topicSuffixProblem("a/") != nil)
        #expect(ReadingLine.topicSuffixProblem("#") != nil)
        #expect(ReadingLine.topicSuffixProblem(String(repeating: "a", count: 257)) != nil)
    }

    @Test func topicsAndPayloadsOfReadings() {
        let r = Reading(topicSuffix: "thermal_zone0", fields: ["temp_c": 47.2], timestamp: 1)
        let s = PluginSettings(id: "linux-thermal", name: "soc")
        #expect(s.topic(for: r, prefix: "bitnetd/kitchen") == "bitnetd/kitchen/sensors/soc/thermal_zone0")
        var t = s
        t.topic = "house/pi"
        #expect(t.topic(for: r, prefix: "bitnetd") == "house/pi/thermal_zone0")
        #expect(t.topic(for: Reading(topicSuffix: "", fields: ["x": 1], timestamp: 1), prefix: "bitnetd") == "house/pi")
        #expect(r.payload(ts: "2026-11-29T15:00:00.000Z").serialized == #"{"temp_c":47.2,"ts":"2026-11-29T15:00:00.000Z"}"#)
        let own = Reading(topicSuffix: "", fields: ["ts": 3], timestamp: 1)
        #expect(own.payload(ts: "x").serialized == #"{"ts":3}"#)
    }
}

@Suite struct LineSplitterTests {
    @Test func splitsAcrossChunksAndStripsCR() {
        var s = LineSplitter(maxLineBytes: 16)
        #expect(s.push(Array("ab".utf8)) == [])
        #expect(s.push(Array("c\r\nd\n\nef".utf8)) == [.line(Array("abc".utf8)), .line(Array("d".utf8)), .line([])])
        #expect(s.pendingByteCount == 2)
        #expect(s.finish() == [.line(Array("ef".utf8))])
        #expect(s.finish() == [])
    }

    @Test func overlongLinesAreReportedOnceAndDiscardedToTheNewline() {
        var s = LineSplitter(maxLineBytes: 4)
        let pieces = s.push(Array("abcdefgh".utf8)) + s.push(Array("ijk\nok\n".utf8))
        #expect(pieces == [.tooLong(prefix: Array("abcde".utf8)), .line(Array("ok".utf8))])
        _ = s.push(Array("xxxxxxx".utf8))
        #expect(s.finish() == [])
    }
}
