#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A small, fast, seedable PRNG (xoshiro256**, seeded through splitmix64).
public struct SplitMixXoshiro: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}

/// Token sampling: repetition penalty → top-k → top-p → min-p → temperature (llama.cpp's
/// default chain order, spec §4.6); temperature 0 is greedy.
public struct Sampler {
    public var options: GenerateOptions
    private var rng: SplitMixXoshiro

    public init(options: GenerateOptions) {
        self.options = options
        var seed = options.seed ?? 0
        if options.seed == nil {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            seed = UInt64(ts.tv_nsec) ^ (UInt64(ts.tv_sec) << 20) ^ UInt64(getpid())
        }
        rng = SplitMixXoshiro(seed: seed)
    }

    public static func argmax(_ logits: [Float]) -> Int32 {
        var best = 0
        var bv = -Float.infinity
        for (i, v) in logits.enumerated() where v > bv {
            bv = v
            best = i
        }
        return Int32(best)
    }

    public mutating func sample(_ input: [Float], history: [Int32]) -> Int32 {
        var logits = input
        if options.repeatPenalty != 1 && options.repeatLastN != 0 {
            let p = Float(options.repeatPenalty)
            let window = options.repeatLastN < 0 ? history[...] : history.suffix(options.repeatLastN)
            for id in Set(window) where id >= 0 && Int(id) < logits.count {
                let v = logits[Int(id)]
                logits[Int(id)] = v > 0 ? v / p : v * p
            }
        }
        if options.temperature <= 0 { return Self.argmax(logits) }

        // Candidates sorted by logit, cut by top-k.
        var idx = Array(0..<logits.count)
        let k = options.topK > 0 ? min(options.topK, idx.count) : idx.count
        if k < idx.count {
            idx = partialTop(logits, k)
        } else {
            idx.sort { logits[$0] > logits[$1] }
        }
        // Softmax over candidates (at temperature 1 for the p filters, like llama.cpp).
        let mx = logits[idx[0]]
        var probs = idx.map { expf(logits[$0] - mx) }
        var sum = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= sum }
        if options.topP < 1 {
            var cum: Float = 0
            var cut = probs.count
            for (i, p) in probs.enumerated() {
                cum += p
                if cum >= Float(options.topP) {
                    cut = i + 1
                    break
                }
            }
            idx = Array(idx[..<cut])
            probs = Array(probs[..<cut])
        }
        if options.minP > 0 {
            let floor = probs[0] * Float(options.minP)
            let keep = probs.prefix { $0 >= floor }.count
            idx = Array(idx[..<max(1, keep)])
        }
        // Temperature, then draw.
        let t = Float(options.temperature)
        probs = idx.map { expf((logits[$0] - mx) / t) }
        sum = probs.reduce(0, +)
        var r = Float(Double(rng.next() >> 11) / Double(1 << 53)) * sum
        for (i, p) in probs.enumerated() {
            r -= p
            if r <= 0 { return Int32(idx[i]) }
        }
        return Int32(idx[idx.count - 1])
    }

    /// Indices of the k largest logits, sorted descending.
    private func partialTop(_ logits: [Float], _ k: Int) -> [Int] {
        var heap: [Int] = []
        heap.reserveCapacity(k + 1)
        var minV = -Float.infinity
        for i in logits.indices {
            let v = logits[i]
            if heap.count < k {
                heap.append(i)
                if heap.count == k { minV = heap.map { logits[$0] }.min()! }
            } else if v > minV {
                if let at = heap.firstIndex(where: { logits[$0] == minV }) { heap[at] = i }
                minV = heap.map { logits[$0] }.min()!
            }
        }
        return heap.sorted { logits[$0] > logits[$1] }
    }
}
