import JSONValue
import Testing

@Suite struct JSONTests {
    @Test func stringsAreEscapedExactlyWhereNeeded() throws {
        let s = "a\"b\\c\n\r\t\u{08}\u{0C}\u{01}\u{1F} é € \u{2028}\u{2029} 😀 end"
        #expect(JSON.string(s).serialized == #""a\"b\\c\n\r\t\b\f\u0001\u001f é € \u2028\u2029 😀 end""#)
        #expect(try JSON.parse(Array(JSON.string(s).serialized.utf8)) == .string(s))
    }

    @Test func longFieldsRoundTrip() throws {
        let big = String(repeating: "y", count: 70_000) + "\"" + String(repeating: "z", count: 10)
        let doc = JSON.object(["v": 1, "pad": .string(big)])
        #expect(try JSON.parse(Array(doc.serialized.utf8)) == doc)
    }
}
