import BitNet
import Foundation
import Testing

/// The Swift tokenizer must reproduce Hugging Face `tokenizers` exactly on byte-level BPE
/// vocabularies trained behind the Llama-3 and the Falcon3 pre-tokenizers (Tests/Fixtures/tokenizer,
/// made by tools/tokenizer-fixture/make_fixture.py).
@Suite struct TokenizerFixtureTests {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var text: String
            var ids: [Int32]
        }
        var tokens: [String]
        var merges: [String]
        var specials: [String: Int32]
        var ignore_merges: Bool
        var pre_tokenizer: String?
        var cases: [Case]
    }

    static func load(_ name: String = "llama3-bpe") throws -> Fixture {
        let here = URL(fileURLWithPath: #filePath)
        let url = here.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizer/\(name).json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    static func tokenizer(_ f: Fixture) throws -> Tokenizer {
        let specialIds = Set(f.specials.values)
        let types: [Tokenizer.TokenType] = f.tokens.indices.map { specialIds.contains(Int32($0)) ? .control : .normal }
        let pre = f.pre_tokenizer.flatMap { PreTokenizer(ggmlName: $0) } ?? .llama3
        return try Tokenizer(tokens: f.tokens, types: types, merges: f.merges, preTokenizer: pre,
                             ignoreMerges: f.ignore_merges, bos: f.specials["<|begin_of_text|>"],
                             eos: f.specials["<|end_of_text|>"], addBOS: true)
    }

    @Test(arguments: ["llama3-bpe", "falcon3-bpe"]) func idsMatchHuggingFaceExactly(_ fixture: String) throws {
        let f = try Self.load(fixture)
        #expect(f.cases.count >= 60)
        let tok = try Self.tokenizer(f)
        var mismatches = 0
        for c in f.cases {
            let ids = tok.encode(c.text, addSpecial: false, parseSpecial: true)
            if ids != c.ids {
                mismatches += 1
                Issue.record("text \(c.text.debugDescription): got \(ids), HF \(c.ids)")
            }
        }
        #expect(mismatches == 0)
    }

    @Test(arguments: ["llama3-bpe", "falcon3-bpe"]) func decodeInvertsEncode(_ fixture: String) throws {
        let f = try Self.load(fixture)
        let tok = try Self.tokenizer(f)
        for c in f.cases {
            #expect(tok.decode(tok.encode(c.text, addSpecial: false), special: true) == c.text)
        }
    }

    @Test func streamingHoldsBackPartialUTF8() throws {
        let f = try Self.load()
        let tok = try Self.tokenizer(f)
        let text = "naïve 日本 🙂 done"
        var stream = TextStream(tokenizer: tok)
        var out = ""
        // Feed single-byte tokens so multi-byte characters arrive in pieces.
        for b in text.utf8 {
            let byteId = byteToken(tok, b)
            let piece = stream.push(byteId)
            #expect(!piece.contains("\u{FFFD}"))
            out += piece
        }
        out += stream.flush()
        #expect(out == text)
    }

    func byteToken(_ tok: Tokenizer, _ b: UInt8) -> Int32 {
        // GPT-2 byte alphabet: printable Latin-1 bytes map to themselves, others to U+0100….
        var n: UInt32 = 0
        for x in 0..<256 {
            let printable = (33...126).contains(x) || (161...172).contains(x) || (174...255).contains(x)
            if x == Int(b) {
                let u = Unicode.Scalar(printable ? UInt32(x) : 256 + n)!
                return tok.id(of: String(u))!
            }
            if !printable { n += 1 }
        }
        fatalError()
    }
}
