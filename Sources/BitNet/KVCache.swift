#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

/// A copy of the KV cache for a token prefix (prefix cache, issue "decisions in milliseconds").
/// `count` may shrink to the part that stayed constant across requests.
public final class KVSnapshot: @unchecked Sendable {
    public private(set) var tokens: [Int32]
    let capacity: Int
    let k: [[UInt16]]
    let v: [[UInt16]]

    init(tokens: [Int32], capacity: Int, k: [[UInt16]], v: [[UInt16]]) {
        self.tokens = tokens
        self.capacity = capacity
        self.k = k
        self.v = v
    }

    public var count: Int { tokens.count }
    public var bytes: Int { k.reduce(0) { $0 + $1.count * 2 } * 2 }

    /// Keeps only the first `n` positions valid.
    public func shrink(to n: Int) {
        if n < tokens.count { tokens.removeLast(tokens.count - n) }
    }
}

/// The KV cache of a context: positions kept, cut back, saved and restored (prefix cache).
extension InferenceContext {
    /// Forgets every position (the cache memory is reused).
    public func reset() { position = 0 }

    /// Drops positions at and after `n` (keeps the first `n`).
    public func truncate(to n: Int) {
        precondition(n >= 0 && n <= position)
        position = n
    }

    /// After a tree pass whose first nodes were a chain from the cached prefix: makes those
    /// nodes' slots positions, up to position `n` (the slots still hold their KV values).
    public func keepTreePrefix(_ n: Int) {
        precondition(n >= position && n <= contextLength)
        position = n
    }

    /// Copies the KV state of positions 0..<count (whose tokens were `tokens[0..<count]`).
    public func snapshot(tokens: [Int32]) -> KVSnapshot {
        let n = tokens.count
        precondition(n <= position)
        let D = hp.headDim
        var k: [[UInt16]] = [], v: [[UInt16]] = []
        for l in 0..<hp.layers {
            var kl = [UInt16](repeating: 0, count: hp.kvHeads * n * D)
            var vl = kl
            for g in 0..<hp.kvHeads {
                let src = g * contextLength * D
                kl.withUnsafeMutableBufferPointer { ($0.baseAddress! + g * n * D).update(from: kCache[l] + src, count: n * D) }
                vl.withUnsafeMutableBufferPointer { ($0.baseAddress! + g * n * D).update(from: vCache[l] + src, count: n * D) }
            }
            k.append(kl)
            v.append(vl)
        }
        return KVSnapshot(tokens: tokens, capacity: n, k: k, v: v)
    }

    /// Makes positions 0..<count hold the snapshot's state (count ≤ snapshot.count).
    public func restore(_ s: KVSnapshot, count n: Int) {
        precondition(n <= s.count && n <= contextLength)
        let D = hp.headDim
        for l in 0..<hp.layers {
            for g in 0..<hp.kvHeads {
                let dst = g * contextLength * D
                s.k[l].withUnsafeBufferPointer { (kCache[l] + dst).update(from: $0.baseAddress! + g * s.capacity * D, count: n * D) }
                s.v[l].withUnsafeBufferPointer { (vCache[l] + dst).update(from: $0.baseAddress! + g * s.capacity * D, count: n * D) }
            }
        }
        position = n
    }
}
