import JSONSchema
import JSONValue
import Testing

/// The schema compiler's errors and the byte-level recognizer: what it accepts, rejects, forces,
/// and how short a completion it promises.
@Suite struct SchemaMatcherTests {
    func matcher(_ schema: String) throws -> SchemaMatcher {
        SchemaMatcher(schema: try JSONSchema.compile(try JSON.parse(schema)))
    }

    func accepts(_ m: SchemaMatcher, _ text: String) -> Bool {
        m.isComplete(m.step(m.initial, Array(text.utf8)))
    }

    func prefixOK(_ m: SchemaMatcher, _ text: String) -> Bool {
        !m.step(m.initial, Array(text.utf8)).isDead
    }

    static let command = """
        {"type": "object", "properties": {
            "house": {"type": "integer", "minimum": 1, "maximum": 12},
            "action": {"enum": ["ventilate", "heat", "water", "nothing"]},
            "level": {"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 10},
            "note": {"type": "string", "maxLength": 5}
          }, "required": ["house", "action"], "additionalProperties": false}
        """

    @Test func objectsInSchemaOrderWithOptionalProperties() throws {
        let m = try matcher(Self.command)
        #expect(accepts(m, #"{"house":2,"action":"heat"}"#))
        #expect(accepts(m, #"{"house":12,"action":"water","level":80}"#))
        #expect(accepts(m, #"{"house":1,"action":"nothing","note":"héllo"}"#))
        #expect(!accepts(m, #"{"house":2}"#), "action is required")
        #expect(!prefixOK(m, #"{"action""#), "keys come in schema order; house is required first")
        #expect(!prefixOK(m, #"{"house":13"#), "13 > maximum")
        #expect(!prefixOK(m, #"{"house":0"#), "0 < minimum")
        #expect(!prefixOK(m, #"{"house":01"#), "no leading zeros")
        #expect(!prefixOK(m, #"{"house":2,"action":"heat","level":85"#), "multipleOf 10")
        #expect(!prefixOK(m, #"{"house":2,"action":"heat","note":"toolong""#), "maxLength 5")
        #expect(!prefixOK(m, #"{"house":2, "#), "compact: no whitespace")
        #expect(!prefixOK(m, #"{"house":2,"action":"heat","extra""#), "no other keys")
        #expect(prefixOK(m, #"{"house":1"#) && prefixOK(m, #"{"house":1,"#), "1, or 10…12")
    }

    @Test func forcedBytesAndShortestCompletion() throws {
        let m = try matcher(Self.command)
        #expect(m.forcedBytes(m.initial) == Array(#"{"house":"#.utf8))
        // After 3 no digit may follow (30 > 12) and action is required: ',"action":"' is forced
        // (every action starts with a quote); after 1 a digit may follow (10…12).
        #expect(m.forcedBytes(m.step(m.initial, Array(#"{"house":3"#.utf8))) == Array(#","action":""#.utf8))
        #expect(m.forcedBytes(m.step(m.initial, Array(#"{"house":1"#.utf8))).isEmpty)
        // Shortest: {"house":1,"action":"heat"} is 27 bytes.
        #expect(m.schema.minimumBytes == #"{"house":1,"action":"heat"}"#.utf8.count)
        #expect(m.minCompletion(m.initial) == m.schema.minimumBytes)
        // Every prefix of a valid text promises no more than what is actually left of it… and the
        // promised completion is achievable: following the cheapest next byte each step finishes.
        for text in [#"{"house":12,"action":"water","level":80}"#, #"{"house":1,"action":"nothing","note":"h\u00e9"}"#] {
            var st = m.initial
            let bytes = Array(text.utf8)
            for (i, b) in bytes.enumerated() {
                #expect(m.minCompletion(st) <= bytes.count - i, "at \(i) of \(text)")
                st = m.step(st, b)
            }
            #expect(m.isComplete(st))
        }
    }

    @Test func greedyCompletionAlwaysFinishesWithinItsPromise() throws {
        for schema in [Self.command, #"{"type":"array","items":{"type":"number","minimum":-2.5,"exclusiveMaximum":3},"minItems":2,"maxItems":3}"#,
                       #"{"anyOf":[{"type":"null"},{"type":"string","minLength":3}]}"#, #"{}"#,
                       ##"{"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/n"}},"required":["v"]}},"$ref":"#/$defs/n"}"##] {
            let m = try matcher(schema)
            // From a few prefixes, walk the cheapest byte: the number of bytes equals the promise.
            var st = m.initial
            var promised = m.minCompletion(st)
            var used = 0
            while !m.isComplete(st) {
                let options = m.allowedBytes(st).map { (b: $0, c: m.minCompletion(m.step(st, $0))) }
                let best = try #require(options.min { $0.c < $1.c }, "stuck in \(schema)")
                #expect(best.c == promised - 1, "\(schema): promise \(promised), next \(best.c)")
                st = m.step(st, best.b)
                promised = best.c
                used += 1
                if used > 500 { break }
            }
            #expect(used == m.schema.minimumBytes, "\(schema)")
        }
    }

    @Test func stringsNumbersLiteralsAndAlternatives() throws {
        let s = try matcher(#"{"type":"string","minLength":2,"maxLength":3}"#)
        #expect(accepts(s, #""ab""#) && accepts(s, #""a\né""#) && !accepts(s, #""a""#) && !prefixOK(s, #""abcd"#))
        #expect(!prefixOK(s, "\"a\u{1}"), "control characters must be escaped")
        #expect(!prefixOK(s, "\"\\ud800"), "no lone surrogate escapes")
        let bytes: [UInt8] = [0x22, 0xC3]  // a lead byte needs its continuation
        #expect(!s.isComplete(s.step(s.initial, bytes + [0x22])))
        #expect(s.step(s.initial, bytes + [0xA9, 0x61, 0x22]).isDead == false)
        #expect(s.step(s.initial, [0x22, 0xE0, 0x80]).isDead, "overlong encodings are refused")

        let n = try matcher(#"{"type":"number","exclusiveMinimum":0,"maximum":1}"#)
        #expect(accepts(n, "0.5") && accepts(n, "1") && !prefixOK(n, "1.5") && !accepts(n, "0") && !prefixOK(n, "-"))
        #expect(n.schema.minimumBytes == 1)
        let i = try matcher(#"{"type":"integer","minimum":-20,"maximum":-10}"#)
        #expect(accepts(i, "-15") && !prefixOK(i, "-9") && !prefixOK(i, "1") && i.schema.minimumBytes == 3)

        let e = try matcher(#"{"enum":["a",1,10,null,{"x":[true]}]}"#)
        for v in [#""a""#, "1", "10", "null", #"{"x":[true]}"#] { #expect(accepts(e, v), "\(v)") }
        #expect(!prefixOK(e, "2") && !prefixOK(e, #"{"x":[f"#))

        let a = try matcher(#"{"type":["integer","null"]}"#)
        #expect(accepts(a, "7") && accepts(a, "null") && !prefixOK(a, "\""))
        let any = try matcher("true")
        #expect(accepts(any, #"{"k":[1,"x",{"y":null}],"z":-0.5}"#) && !prefixOK(any, "{1"))
    }

    @Test func schemaErrorsNameTheKeyword() throws {
        func error(_ schema: String) -> String {
            do {
                _ = try JSONSchema.compile(try JSON.parse(schema))
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(error(#"{"type":"string","pattern":"^a"}"#) == "/pattern: unknown or unsupported keyword 'pattern' (not supported for generation)")
        #expect(error(#"{"properties":{"a":{"type":"strin"}}}"#) == "/properties/a/type: unknown type 'strin' (object, array, string, integer, number, boolean, null)")
        #expect(error(#"{"type":"object","additionalProperties":true}"#).hasPrefix("/additionalProperties: additionalProperties may only be false"))
        #expect(error(#"{"type":"object","required":["x"]}"#) == "/required/0: required property 'x' is not in properties")
        #expect(error(#"{"type":"number","multipleOf":2}"#) == "/multipleOf: multipleOf is supported for integers only")
        #expect(error(#"{"type":"integer","minimum":3,"maximum":2}"#) == "no integer satisfies these bounds")
        #expect(error(##"{"$ref":"#/$defs/missing"}"##) == "/$ref: cannot resolve $ref '#/$defs/missing' (supported: #, #/$defs/NAME)")
        #expect(error(#"{"enum":[1,"a"],"type":"integer"}"#) == #"/enum/1: "a" is not of type integer"#)
        #expect(error(#"{"title":"x","description":"y","$schema":"s","$id":"i","$comment":"c","examples":[1],"default":1,"type":"integer"}"#) == "no error")
        #expect(error(##"{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}"##).contains("no finite value"))
    }
}
