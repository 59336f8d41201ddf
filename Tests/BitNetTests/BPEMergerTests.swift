@testable import BitNet
import Testing

/// BPE merging is O(n log n) (hardening issue: one 32,000-letter word took 13.7 s with a rescan
/// per merge) and picks exactly the pairs the rescan picked.
@Suite struct BPEMergerTests {
    /// The definition: rescan every adjacent pair, merge the lowest rank (leftmost on a tie).
    static func rescan(_ input: [Int32], _ merges: [UInt64: (rank: Int32, id: Int32)]) -> [Int32] {
        var s = input
        while s.count > 1 {
            var best = Int32.max, at = -1, id: Int32 = 0
            for k in 0..<(s.count - 1) where s[k] >= 0 && s[k + 1] >= 0 {
                if let m = merges[BPEMerger.key(s[k], s[k + 1])], m.rank < best { (best, at, id) = (m.rank, k, m.id) }
            }
            if at < 0 { break }
            s[at] = id
            s.remove(at: at + 1)
        }
        return s.filter { $0 >= 0 }
    }

    struct LCG {
        var x: UInt64
        mutating func next(_ n: Int) -> Int {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            return Int((x >> 33) % UInt64(n))
        }
    }

    @Test func sameMergesAsTheRescanOnRandomTables() {
        var rng = LCG(x: 7)
        for round in 0..<300 {
            // Symbols 0..<a are "bytes" (a few without a token: -1); merges build ids a..<a+m,
            // with repeated ranks' worth of overlapping pairs such as (x, x).
            let a = 2 + rng.next(4), m = rng.next(12)
            var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
            for r in 0..<m {
                let l = Int32(rng.next(a + r)), rr = Int32(rng.next(a + r))
                let k = BPEMerger.key(l, rr)
                if merges[k] == nil { merges[k] = (Int32(r), Int32(a + r)) }
            }
            let n = rng.next(40)
            let input = (0..<n).map { _ in rng.next(10) == 0 ? Int32(-1) : Int32(rng.next(a)) }
            var merger = BPEMerger(merges: merges)
            #expect(merger.merge(input) == Self.rescan(input, merges), "round \(round): \(input)")
        }
    }

    @Test func workGrowsAsNLogNWhenTheInputDoubles() throws {
        let f = try TokenizerFixtureTests.load()
        let tok = try TokenizerFixtureTests.tokenizer(f)
        // A long unbroken "word" of letters, as an MQTT payload can carry.
        var rng = LCG(x: 3)
        let letters = Array("etaoinshrdlucmfwyp".unicodeScalars)
        func word(_ n: Int) -> String {
            var s = String.UnicodeScalarView()
            for _ in 0..<n { s.append(letters[rng.next(letters.count)]) }
            return String(s)
        }
        let small = tok.mergeSteps(word(8_000)), large = tok.mergeSteps(word(16_000))
        // n log n doubles to ~2.15×; a rescan per merge would be ~4×.
        #expect(small > 8_000)
        #expect(Double(large) / Double(small) < 2.5, "steps \(small) → \(large)")
        let w = word(2_000)
        #expect(tok.encode(w, addSpecial: false).count > 0)
    }

    @Test func encodingMatchesTheRescanOnLongWords() throws {
        let f = try TokenizerFixtureTests.load()
        let tok = try TokenizerFixtureTests.tokenizer(f)
        var rng = LCG(x: 11)
        let letters = Array("etaoinshrdlucmfwyp".unicodeScalars)
        var s = String.UnicodeScalarView()
        for _ in 0..<1_500 { s.append(letters[rng.next(letters.count)]) }
        let word = String(s)
        // Through the public path vs the rescan over the tokenizer's own merge table.
        let ids = tok.encode(word, addSpecial: false, parseSpecial: false)
        #expect(ids == Self.rescan(tok.byteSymbols(word), tok.mergeTable))
    }
}
