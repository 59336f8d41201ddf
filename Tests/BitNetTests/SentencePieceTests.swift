@testable import BitNet
import Foundation
import Testing

/// SentencePiece vocabularies (`tokenizer.ggml.model = llama`): the Swift encoder must reproduce
/// the `sentencepiece` package exactly on a BPE model with byte fallback trained here
/// (Tests/Fixtures/tokenizer/spm-bpe.json, made by tools/tokenizer-fixture/make_spm_fixture.py).
@Suite struct SentencePieceTests {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var category: String
            var text: String
            var ids: [Int32]
        }
        var tokens: [String]
        var scores: [Float]
        var types: [Int32]
        var cases: [Case]
    }

    static func load() throws -> (Fixture, Tokenizer) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizer/spm-bpe.json")
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        let tok = try Tokenizer(tokens: f.tokens, types: f.types.map { Tokenizer.TokenType(rawValue: $0) ?? .normal }, merges: [],
                                preTokenizer: .default, ignoreMerges: false, bos: 1, eos: 2, addBOS: true,
                                model: .spm, scores: f.scores, addSpacePrefix: true, unknown: 0)
        return (f, tok)
    }

    @Test func idsMatchSentencePieceExactly() throws {
        let (f, tok) = try Self.load()
        #expect(f.cases.count >= 100)
        var mismatches = 0
        for c in f.cases {
            let ids = tok.encode(c.text, addSpecial: false)
            if ids != c.ids {
                mismatches += 1
                Issue.record("\(c.category) \(c.text.debugDescription): got \(ids), sentencepiece \(c.ids)")
            }
        }
        #expect(mismatches == 0)
        // Byte fallback is exercised (characters outside the trained pieces).
        let byteIDs = Set(f.tokens.indices.filter { f.types[$0] == 6 }.map(Int32.init))
        #expect(f.cases.contains { $0.ids.contains(where: byteIDs.contains) })
    }

    @Test func decodingUndoesTheSpacePrefixAndByteFallback() throws {
        let (f, tok) = try Self.load()
        for c in f.cases {
            #expect(tok.decode(c.ids) == c.text, "\(c.text.debugDescription)")
        }
        // BOS first: still one space removed, none added.
        #expect(tok.decode(tok.encode("hello world")) == "hello world")
        #expect(tok.encode("hello").first == 1, "BOS added")
    }

    @Test func mergingIsLinearithmic() throws {
        let (_, tok) = try Self.load()
        // One unbroken word: doubling it must not much more than double the heap work (a rescan
        // per merge would quadruple it). Counted, not timed.
        let small = tok.spmMergeSteps(String(repeating: "temperaturehumidity", count: 400))
        let large = tok.spmMergeSteps(String(repeating: "temperaturehumidity", count: 800))
        #expect(small > 1000 && Double(large) < 2.5 * Double(small), "\(small) → \(large)")
        let text = String(repeating: "temperaturehumidity", count: 800)
        #expect(tok.decode(tok.encode(text, addSpecial: false)) == text)
    }
}
