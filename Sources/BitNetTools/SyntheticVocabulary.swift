import BitNet

/// A byte-level BPE vocabulary for generated models: the 256 byte tokens, merges learned from a
/// small built-in English text (so ordinary prompts tokenize into plausible pieces), then random
/// merges of existing tokens up to the requested size, and the Llama-3 special tokens at the end
/// (for the 2B4T size: ids 128000–128255 like the published file).
struct SyntheticVocabulary {
    var tokens: [String] = []
    var types: [Int32] = []
    var merges: [String] = []
    var bos: Int = 0
    var eos: Int = 0

    static let corpus = """
    The temperature in the greenhouse is rising and the soil is dry, so the plants need water. \
    Sensor readings: temperature 31.5 C, humidity 40 %, soil moisture 12 %, light 820 lux. \
    Answer with one word: water, ventilate, heat or nothing. The machine vibration is normal; \
    the motor current is 4.2 A and the bearing temperature is 65 C. Decide: normal, inspect or stop. \
    Hello! How are you today? I'm fine, thanks. What's the weather like in Paris? It's sunny and warm. \
    The capital of France is Paris. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2025 3.14159.
    """

    /// None (a SentencePiece model is written instead).
    static let empty = SyntheticVocabulary()

    private init() {}

    init(size: Int, seed: UInt64) {
        let specialCount = size >= 128_256 ? 256 : max(10, min(16, size / 32))
        let baseSize = size - specialCount
        precondition(baseSize >= 256, "vocabulary of \(size) is too small (needs ≥ \(256 + specialCount))")
        let (b2u, _) = Tokenizer.byteAlphabet()
        var index: [String: Int] = [:]
        func add(_ t: String) {
            index[t] = tokens.count
            tokens.append(t)
            types.append(1)
        }
        for b in 0..<256 { add(String(b2u[b])) }

        // BPE training on the corpus fragments (Llama-3 pre-tokenizer), most frequent pair first.
        var words: [[String]] = PreTokenizer.llama3.split(Self.corpus).map { frag in
            Array(frag.utf8).map { String(b2u[Int($0)]) }
        }
        while tokens.count < baseSize {
            var counts: [String: (Int, String, String)] = [:]
            for w in words where w.count > 1 {
                for k in 0..<(w.count - 1) {
                    let key = w[k] + " " + w[k + 1]
                    counts[key, default: (0, w[k], w[k + 1])].0 += 1
                }
            }
            guard let best = counts.max(by: { ($0.value.0, $1.key) < ($1.value.0, $0.key) }), best.value.0 >= 2 else { break }
            let (l, r) = (best.value.1, best.value.2)
            let merged = l + r
            merges.append(l + " " + r)
            if index[merged] == nil { add(merged) }
            words = applyMerge(l, r, to: words)
        }
        // Pad with random merges of existing tokens.
        var rng = SplitMixXoshiro(seed: seed ^ 0xB0CA)
        var attempts = 0
        while tokens.count < baseSize {
            attempts += 1
            let a = tokens[Int(rng.next() % UInt64(min(tokens.count, 4096)))]
            let b = tokens[Int(rng.next() % UInt64(tokens.count))]
            let m = a + b
            if index[m] != nil || m.unicodeScalars.count > 16 {
                if attempts > 50 * size { break }
                continue
            }
            merges.append(a + " " + b)
            add(m)
        }
        precondition(tokens.count == baseSize, "could not build \(baseSize) base tokens")

        let named = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                     "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                     "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|reserved_special_token_4|>", "<|eot_id|>"]
        for i in 0..<specialCount {
            let name = i < named.count ? named[i] : "<|reserved_special_token_\(i - 5)|>"
            tokens.append(name)
            types.append(3)
        }
        bos = baseSize
        eos = baseSize + 1
    }
}

/// A SentencePiece vocabulary for generated models of the 1bitLLM layout (`tokenizer.ggml.model =
/// llama`): `<unk>` 0, `<s>` 1, `</s>` 2, the 256 byte-fallback tokens `<0x00>`…`<0xFF>`, then
/// pieces learned from the built-in text (`▁` for spaces; each merge scored below the previous
/// one, as SentencePiece's BPE scores are), then random concatenations of existing pieces up to
/// the requested size.
struct SyntheticSentencePiece {
    var tokens: [String] = []
    var scores: [Float] = []
    var types: [Int32] = []

    init(size: Int, seed: UInt64) {
        precondition(size >= 300, "vocabulary of \(size) is too small (needs ≥ 300)")
        var index: [String: Int] = [:]
        func add(_ t: String, _ type: Int32, _ score: Float) {
            guard index[t] == nil else { return }
            index[t] = tokens.count
            tokens.append(t)
            types.append(type)
            scores.append(score)
        }
        add("<unk>", 2, 0)
        add("<s>", 3, 0)
        add("</s>", 3, 0)
        for b in 0..<256 { add("<0x" + String(b, radix: 16, uppercase: true).leftPadded(to: 2) + ">", 6, 0) }
        let text = "▁" + SyntheticVocabulary.corpus.replacingOccurrences(" ", "▁")
        // Single characters first (as SentencePiece's alphabet), then merges by frequency.
        var words: [[String]] = text.split(separator: "▁").map { w in ["▁"] + w.map(String.init) }
        for w in words { for c in w where tokens.count < size { add(c, 1, -1e6) } }
        var score: Float = -1
        while tokens.count < size {
            var counts: [String: Int] = [:]
            for w in words where w.count > 1 {
                for k in 0..<(w.count - 1) { counts[w[k] + "\u{0}" + w[k + 1], default: 0] += 1 }
            }
            guard let best = counts.max(by: { ($0.value, $1.key) < ($1.value, $0.key) }), best.value >= 2 else { break }
            let parts = best.key.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
            let merged = parts[0] + parts[1]
            add(merged, 1, score)
            score -= 1
            words = applyMerge(parts[0], parts[1], to: words)
        }
        var rng = SplitMixXoshiro(seed: seed ^ 0x5350)
        let learned = tokens.count
        while tokens.count < size {
            let a = tokens[259 + Int(rng.next() % UInt64(learned - 259))]
            let b = tokens[259 + Int(rng.next() % UInt64(learned - 259))]
            add(a + b, 1, score)
            score -= 1
            if index[a + b] != tokens.count - 1 && tokens.count < size {
                add("▁" + a + b + "\(tokens.count)", 1, score)  // keep the count moving on collisions
            }
        }
    }
}

/// Every adjacent `l`, `r` in each word replaced by `l + r`, left to right (one BPE training step).
func applyMerge(_ l: String, _ r: String, to words: [[String]]) -> [[String]] {
    let merged = l + r
    return words.map { w in
        var out: [String] = []
        var k = 0
        while k < w.count {
            if k + 1 < w.count && w[k] == l && w[k + 1] == r {
                out.append(merged)
                k += 2
            } else {
                out.append(w[k])
                k += 1
            }
        }
        return out
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
