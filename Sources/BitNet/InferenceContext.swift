#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

/// Which logits a forward call computes. Computing only what a task needs is the largest saving
/// in generation and decisions: the tied LM head is more bytes than all layers of 2B4T together.
public enum LogitRequest: Sendable {
    /// No logits (prefill of a prefix).
    case none
    /// Full vocabulary for the last token of the batch.
    case last
    /// Full vocabulary for every token of the batch (`logits` command, cross-checks).
    case all
    /// Per batch position, the full vocabulary or selected rows (label-only logits, tree passes),
    /// concatenated in request order.
    case nodes([(Int, NodeLogits)])
}

/// Tokens arranged as a forest on top of the positions already in the KV cache: every node sees
/// the cached positions, its ancestors and itself, never its siblings. One pass over the weights
/// serves several decisions (each event's changing suffix) and every label continuation of a
/// decision (a shared-prefix trie), and each node's values are exactly those a plain sequential
/// pass over its own path would give (attention probabilities are not F16-rounded in tree passes).
public struct TokenTree: Sendable {
    public private(set) var tokens: [Int32] = []
    /// Parent node of each node; -1 = follows the last cached position.
    public private(set) var parents: [Int] = []
    private var children: [Int: [Int32: Int]] = [:]

    public init() {}

    public var count: Int { tokens.count }

    /// The node for `token` under `parent` (-1 = the cached prefix), added when new.
    @discardableResult
    public mutating func node(_ token: Int32, parent: Int) -> Int {
        precondition(parent >= -1 && parent < tokens.count)
        if let n = children[parent]?[token] { return n }
        tokens.append(token)
        parents.append(parent)
        children[parent, default: [:]][token] = tokens.count - 1
        return tokens.count - 1
    }

    /// Depth of each node below the cached prefix (0 for a root).
    var depths: [Int] {
        var d = [Int](repeating: 0, count: tokens.count)
        for i in tokens.indices where parents[i] >= 0 { d[i] = d[parents[i]] + 1 }
        return d
    }
}

/// What a tree pass computes at one node.
public enum NodeLogits: Sendable {
    /// The whole vocabulary.
    case full
    /// The LM-head values of these vocabulary rows only.
    case rows([Int32])
}

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

/// Receives intermediate tensors of the first layer pass (for `logits --dump-stages`).
public protocol StageSink: AnyObject {
    func floats(_ name: String, rows: Int, cols: Int, _ data: UnsafePointer<Float>)
    func ints(_ name: String, rows: Int, cols: Int, _ data: UnsafePointer<Int32>)
}

/// A model run state: the KV cache, scratch buffers, and the forward pass (spec §4).
///
/// Numerics (spec §3.3, §4.5, §4.7): every ternary matmul quantizes its input per token to int8
/// (absmax, round half to even) and accumulates in int32; RMSNorm/RoPE/softmax in f32; K and V
/// stored as F16; q rounded to F16 for K·q; softmax probabilities rounded to F16 for V·p only on
/// 1-token calls; the final normed vector rounded to F16 before the LM head. These storage
/// choices match llama.cpp/bitnet.cpp defaults so logits can be compared with them.
public final class InferenceContext: @unchecked Sendable {
    public let model: BitNetModel
    public let kernels: KernelSet
    public let pool: ThreadPool
    public let contextLength: Int
    /// Largest batch processed in one pass; longer prompts are split.
    public let maxBatch: Int
    /// Number of positions currently in the KV cache.
    public private(set) var position = 0
    /// The Q8_0 LM-head copy (`useQ8LMHead`) in split layout, one allocation: values (rows × K
    /// int8), then block scales (rows × K/32 f32). nil = the file's own head is used.
    private struct HeadCopy {
        let values: UnsafeMutablePointer<Int8>
        let scales: UnsafeMutablePointer<Float>
        let bytes: Int
    }
    private var headCopy: HeadCopy?
    /// The type of the LM head in use: the file's, or `.q8_0` for the copy.
    public var lmHeadType: GGMLType { headCopy == nil ? model.output.type : .q8_0 }
    /// Bytes of the LM-head copy in use (0 = the file's own head).
    public var lmHeadCopyBytes: Int { headCopy?.bytes ?? 0 }

    private let hp: HyperParameters
    private var kCache: [UnsafeMutablePointer<UInt16>]
    private var vCache: [UnsafeMutablePointer<UInt16>]

    // Scratch, sized for maxBatch tokens.
    private let x: UnsafeMutablePointer<Float>
    private let normed: UnsafeMutablePointer<Float>
    private let q8: UnsafeMutablePointer<Int8>
    private let actScale: UnsafeMutablePointer<Float>
    private let actSum: UnsafeMutablePointer<Int32>
    private let qb: UnsafeMutablePointer<Float>
    private let kb: UnsafeMutablePointer<Float>
    private let vb: UnsafeMutablePointer<Float>
    private let attn: UnsafeMutablePointer<Float>
    private let gate: UnsafeMutablePointer<Float>
    private let up: UnsafeMutablePointer<Float>
    private let dots: UnsafeMutablePointer<Int32>
    private let scores: UnsafeMutablePointer<Float>     // threads × contextLength
    private let qh16: UnsafeMutablePointer<Float>       // threads × headDim
    private let ropeCos: UnsafeMutablePointer<Float>    // maxBatch × ropeDims/2
    private let ropeSin: UnsafeMutablePointer<Float>
    private var allocations: [UnsafeMutableRawPointer] = []

    public init(model: BitNetModel, kernels: KernelSet, pool: ThreadPool, contextLength: Int, maxBatch: Int = 256) {
        self.model = model
        self.kernels = kernels
        self.pool = pool
        self.hp = model.hp
        self.contextLength = contextLength
        self.maxBatch = maxBatch
        let hp = model.hp
        var allocs: [UnsafeMutableRawPointer] = []
        // The KV cache is not zero-filled: positions are always written before they are read, and
        // untouched pages of a large allocation cost no memory (a 4096-token cache of 2B4T is
        // 300 MiB, of which a short session touches little).
        func alloc<T>(_ n: Int, _: T.Type, zero: Bool = true) -> UnsafeMutablePointer<T> {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * MemoryLayout<T>.stride, alignment: 64)
            if zero { raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(n, 1) * MemoryLayout<T>.stride) }
            allocs.append(raw)
            return raw.bindMemory(to: T.self, capacity: max(n, 1))
        }
        let wide = max(hp.embedding, hp.feedForward, hp.qWidth)
        x = alloc(maxBatch * hp.embedding, Float.self)
        normed = alloc(maxBatch * wide, Float.self)
        q8 = alloc(maxBatch * wide, Int8.self)
        actScale = alloc(maxBatch, Float.self)
        actSum = alloc(maxBatch, Int32.self)
        qb = alloc(maxBatch * hp.qWidth, Float.self)
        kb = alloc(maxBatch * hp.kvWidth, Float.self)
        vb = alloc(maxBatch * hp.kvWidth, Float.self)
        attn = alloc(maxBatch * hp.qWidth, Float.self)
        gate = alloc(maxBatch * hp.feedForward, Float.self)
        up = alloc(maxBatch * hp.feedForward, Float.self)
        dots = alloc(maxBatch * max(wide, hp.kvWidth), Int32.self)
        scores = alloc(pool.threadCount * contextLength, Float.self)
        qh16 = alloc(pool.threadCount * hp.headDim, Float.self)
        ropeCos = alloc(maxBatch * hp.ropeDims / 2, Float.self)
        ropeSin = alloc(maxBatch * hp.ropeDims / 2, Float.self)
        var kc: [UnsafeMutablePointer<UInt16>] = []
        var vc: [UnsafeMutablePointer<UInt16>] = []
        for _ in 0..<hp.layers {
            kc.append(alloc(hp.kvWidth * contextLength, UInt16.self, zero: false))
            vc.append(alloc(hp.kvWidth * contextLength, UInt16.self, zero: false))
        }
        kCache = kc
        vCache = vc
        allocations = allocs
    }

    deinit {
        for a in allocations { a.deallocate() }
        if let c = headCopy { UnsafeMutableRawPointer(c.values).deallocate() }
    }

    /// Builds a Q8_0 copy of the LM head in memory and uses it for logits (about half the bytes
    /// of an F16 head read per generated token, at a small cost in exactness — `bench
    /// --lm-head-eval` measures it). `false` returns to the file's own head. Returns the copy's
    /// size in bytes. The copy keeps Q8_0's values and block scales apart (split layout), so the
    /// kernel scales eight blocks at a time.
    @discardableResult
    public func useQ8LMHead(_ on: Bool) -> Int {
        if let c = headCopy { UnsafeMutableRawPointer(c.values).deallocate() }
        headCopy = nil
        guard on else { return 0 }
        let src = model.output
        let K = src.columns, rows = src.rows, nb = K / 32
        let bytes = rows * K + rows * nb * 4
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let wq = buf.bindMemory(to: Int8.self, capacity: rows * K)
        let wd = (buf + rows * K).bindMemory(to: Float.self, capacity: rows * nb)
        pool.parallelFor(rows, granularity: 256) { r0, r1 in
            var row = [Float](repeating: 0, count: K)
            row.withUnsafeMutableBufferPointer { rp in
                for r in r0..<r1 {
                    dequantizeRow(src, row: r, into: rp.baseAddress!)
                    tk_quantize_row_q8s(rp.baseAddress!, wq + r * K, wd + r * nb, Int64(K))
                }
            }
        }
        headCopy = HeadCopy(values: wq, scales: wd, bytes: bytes)
        return bytes
    }

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

    /// Runs `tokens` at positions `position ..< position + tokens.count` and returns the logits
    /// asked for: `.last` → vocab floats; `.all` → tokens.count × vocab; `.nodes` → the
    /// requested values in request order; `.none` → [].
    public func forward(_ tokens: [Int32], logits: LogitRequest, sink: StageSink? = nil) throws -> [Float] {
        guard !tokens.isEmpty else { return [] }
        guard position + tokens.count <= contextLength else {
            throw RequestError("context full: \(position) + \(tokens.count) tokens exceed the context length \(contextLength)")
        }
        for t in tokens where t < 0 || Int(t) >= hp.vocabSize {
            throw RequestError("token id \(t) is outside the vocabulary (0..<\(hp.vocabSize))")
        }
        var result: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + maxBatch)
            let chunk = Array(tokens[start..<end])
            let isLast = end == tokens.count
            let req: LogitRequest
            switch logits {
            case .none: req = .none
            case .last: req = isLast ? .last : .none
            case .all: req = .all
            case .nodes(let sel):
                let mine = sel.filter { $0.0 >= start && $0.0 < end }.map { ($0.0 - start, $0.1) }
                req = mine.isEmpty ? .none : .nodes(mine)
            }
            result += forwardBatch(chunk, logits: req, sink: start == 0 ? sink : nil)
            start = end
        }
        return result
    }

    /// Runs a token tree on top of the cached positions (`position` is unchanged afterwards:
    /// the tree's KV slots are scratch) and returns, for each request, the full vocabulary or the
    /// requested rows at that node, in request order.
    public func forward(tree: TokenTree, logits requests: [(node: Int, NodeLogits)]) throws -> [[Float]] {
        guard tree.count > 0 else { return [] }
        let P = position
        guard P + tree.count <= contextLength else {
            throw RequestError("context full: \(P) + \(tree.count) tokens exceed the context length \(contextLength)")
        }
        for t in tree.tokens where t < 0 || Int(t) >= hp.vocabSize {
            throw RequestError("token id \(t) is outside the vocabulary (0..<\(hp.vocabSize))")
        }
        for (n, _) in requests { precondition(n >= 0 && n < tree.count) }
        let depths = tree.depths
        var results = [[Float]](repeating: [], count: requests.count)
        var start = 0
        defer { position = P }
        while start < tree.count {
            let end = min(tree.count, start + maxBatch)
            var layout = TreeLayout(prefix: P, ropePositions: [], slots: [])
            for i in start..<end {
                layout.ropePositions.append(P + depths[i])
                var path: [Int32] = []
                var a = i
                while a >= 0 { path.append(Int32(P + a)); a = tree.parents[a] }
                layout.slots.append(path.reversed())
            }
            let mine = requests.indices.filter { requests[$0].node >= start && requests[$0].node < end }
            let req: LogitRequest = mine.isEmpty ? .none
                : .nodes(mine.map { (requests[$0].node - start, requests[$0].1) })
            let out = forwardBatch(Array(tree.tokens[start..<end]), logits: req, sink: nil, tree: layout)
            var off = 0
            for k in mine {
                let len: Int
                switch requests[k].1 {
                case .full: len = hp.vocabSize
                case .rows(let ids): len = ids.count
                }
                results[k] = Array(out[off..<(off + len)])
                off += len
            }
            start = end
        }
        return results
    }

    /// Where the tokens of a tree pass sit: RoPE positions and, per token, the KV slots after the
    /// cached prefix that it attends to (ancestors and itself, ascending).
    struct TreeLayout {
        var prefix: Int
        var ropePositions: [Int]
        var slots: [[Int32]]
    }

    // MARK: - One batch

    private func forwardBatch(_ tokens: [Int32], logits: LogitRequest, sink: StageSink?, tree: TreeLayout? = nil) -> [Float] {
        let n = tokens.count
        let d = hp.embedding
        let pos0 = position

        // Embedding rows.
        let emb = model.tokenEmbedding
        let x = self.x
        perToken(n) { t in self.dequantizeRow(emb, row: Int(tokens[t]), into: x + t * d) }
        prepareRope(n: n, pos0: pos0, positions: tree?.ropePositions)

        for l in 0..<hp.layers {
            let w = model.layers[l]
            let name = "l\(l)."
            sinkLayer(sink, name + "in", x, n, d)
            rmsNorm(x, w.attnNorm, width: d, n: n, out: normed)
            sinkLayer(sink, name + "attn_norm", normed, n, d)
            quantizeRows(normed, width: d, n: n)
            bitLinear([(w.q, qb), (w.k, kb), (w.v, vb)], n: n, sink: sink, prefix: name,
                      names: ["attn_q", "attn_k", "attn_v"])
            applyRope(qb, heads: hp.heads, n: n)
            applyRope(kb, heads: hp.kvHeads, n: n)
            sinkLayer(sink, name + "q_rope", qb, n, hp.qWidth)
            sinkLayer(sink, name + "k_rope", kb, n, hp.kvWidth)
            storeKV(layer: l, n: n, pos0: pos0)
            attention(layer: l, n: n, pos0: pos0, tree: tree)
            sinkLayer(sink, name + "attn", attn, n, hp.qWidth)
            rmsNorm(attn, w.attnSubNorm, width: hp.qWidth, n: n, out: normed)
            sinkLayer(sink, name + "attn_sub_norm", normed, n, hp.qWidth)
            quantizeRows(normed, width: hp.qWidth, n: n)
            bitLinear([(w.o, qb)], n: n, sink: sink, prefix: name, names: ["attn_output"])
            addResidual(n: n)
            sinkLayer(sink, name + "ffn_in", x, n, d)
            rmsNorm(x, w.ffnNorm, width: d, n: n, out: normed)
            sinkLayer(sink, name + "ffn_norm", normed, n, d)
            quantizeRows(normed, width: d, n: n)
            bitLinear([(w.gate, gate), (w.up, up)], n: n, sink: sink, prefix: name, names: ["ffn_gate", "ffn_up"])
            let ff = hp.feedForward, gate = self.gate, up = self.up
            switch hp.activation {
            case .relu2:
                perToken(n) { t in
                    for i in (t * ff)..<((t + 1) * ff) {
                        let g = max(gate[i], 0)
                        gate[i] = g * g * up[i]
                    }
                }
            case .silu:
                perToken(n) { t in
                    for i in (t * ff)..<((t + 1) * ff) {
                        let g = gate[i]
                        gate[i] = g / (1 + expf(-g)) * up[i]
                    }
                }
            }
            sinkLayer(sink, name + "ffn_act", gate, n, ff)
            rmsNorm(gate, w.ffnSubNorm, width: ff, n: n, out: normed)
            sinkLayer(sink, name + "ffn_sub_norm", normed, n, ff)
            quantizeRows(normed, width: ff, n: n)
            bitLinear([(w.down, qb)], n: n, sink: sink, prefix: name, names: ["ffn_down"])
            addResidual(n: n)
        }
        position = pos0 + n

        // Output norm + LM head for the rows that need logits.
        let rowsNeeded: [Int]
        switch logits {
        case .none: return []
        case .last: rowsNeeded = [n - 1]
        case .all: rowsNeeded = Array(0..<n)
        case .nodes(let sel): rowsNeeded = sel.map { $0.0 }
        }
        for r in Set(rowsNeeded) {
            rmsNorm(x + r * d, model.outputNorm, width: d, n: 1, out: normed + r * d)
        }
        if let sink, case .all = logits {
            sink.floats("out_norm", rows: n, cols: d, normed)
        }
        for r in Set(rowsNeeded) { tk_round_f16_inplace(normed + r * d, Int64(d)) }

        let V = hp.vocabSize
        switch logits {
        case .none:
            return []
        case .last:
            var out = [Float](repeating: 0, count: V)
            out.withUnsafeMutableBufferPointer { lmHead(rowsOf: normed + (n - 1) * d, nt: 1, out: $0.baseAddress!) }
            return out
        case .all:
            var out = [Float](repeating: 0, count: n * V)
            out.withUnsafeMutableBufferPointer { lmHead(rowsOf: normed, nt: n, out: $0.baseAddress!) }
            if let sink { out.withUnsafeBufferPointer { sink.floats("logits", rows: n, cols: V, $0.baseAddress!) } }
            return out
        case .nodes(let sel):
            var out: [Float] = []
            for (r, what) in sel {
                switch what {
                case .rows(let ids): out += lmRows(ids, x: normed + r * d)
                case .full:
                    var row = [Float](repeating: 0, count: V)
                    row.withUnsafeMutableBufferPointer { lmHead(rowsOf: normed + r * d, nt: 1, out: $0.baseAddress!) }
                    out += row
                }
            }
            return out
        }
    }

    private func sinkLayer(_ sink: StageSink?, _ name: String, _ p: UnsafePointer<Float>, _ rows: Int, _ cols: Int) {
        guard let sink else { return }
        sink.floats(name, rows: rows, cols: cols, p)
    }

    // MARK: - Building blocks

    func dequantizeRow(_ w: WeightMatrix, row: Int, into y: UnsafeMutablePointer<Float>) {
        let K = w.columns
        let rowPtr = w.data + row * w.type.rowBytes(K)
        switch w.type {
        case .f32: y.update(from: rowPtr.assumingMemoryBound(to: Float.self), count: K)
        case .f16: tk_dequant_row_f16(rowPtr, y, Int64(K))
        case .bf16: tk_dequant_row_bf16(rowPtr, y, Int64(K))
        case .q8_0: tk_dequant_row_q8_0(rowPtr, y, Int64(K))
        case .q6_K: tk_dequant_row_q6_k(rowPtr, y, Int64(K))
        case .tq2_0: tk_dequant_row_tq2_0(rowPtr, y, Int64(K))
        case .tq1_0: tk_dequant_row_tq1_0(rowPtr, y, Int64(K))
        case .i2_s: tk_dequant_row_i2s(w.data + row * K / 4, w.alpha, y, Int64(K))
        }
    }

    /// Runs `body(t)` for every token of a batch, on the pool's threads when there are several
    /// tokens (per-token work is independent, so the split never changes a value).
    @inline(__always)
    func perToken(_ n: Int, _ body: (Int) -> Void) {
        if n < 2 || pool.threadCount == 1 {
            for t in 0..<n { body(t) }
        } else {
            pool.parallelFor(n) { t0, t1 in for t in t0..<t1 { body(t) } }
        }
    }

    /// x += qb over the batch (the residual connections).
    private func addResidual(n: Int) {
        let d = hp.embedding, x = self.x, qb = self.qb
        perToken(n) { t in for i in (t * d)..<((t + 1) * d) { x[i] += qb[i] } }
    }

    /// RMSNorm (spec §4.2): mean of squares summed in double, scale = 1/sqrtf(mean + eps) in float.
    func rmsNorm(_ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, width: Int, n: Int,
                 out: UnsafeMutablePointer<Float>) {
        let eps = hp.rmsEpsilon
        perToken(n) { t in
            let xi = input + t * width
            let yo = out + t * width
            var sum: Double = 0
            for i in 0..<width { sum += Double(xi[i]) * Double(xi[i]) }
            let mean = Float(sum / Double(width))
            let scale = 1 / sqrtf(mean + eps)
            for i in 0..<width { yo[i] = (xi[i] * scale) * weight[i] }
        }
    }

    func quantizeRows(_ input: UnsafePointer<Float>, width: Int, n: Int) {
        let quant = kernels.table.pointee.quantize_i8!
        let q8 = self.q8, actScale = self.actScale, actSum = self.actSum
        perToken(n) { t in
            actScale[t] = quant(input + t * width, q8 + t * width, Int64(width), actSum + t)
        }
    }

    /// Ternary matmuls sharing one quantized input (q8 rows of width `columns`), in one parallel
    /// region: y[t][m] = (Σ T·q) / s_t · α · scale.
    func bitLinear(_ mats: [(WeightMatrix, UnsafeMutablePointer<Float>)], n: Int, sink: StageSink?,
                   prefix: String, names: [String]) {
        let table = kernels.table.pointee
        let dotsBase = dots
        let q8 = self.q8, actScale = self.actScale, actSum = self.actSum
        var dotOffsets: [Int] = []
        var off = 0
        for (w, _) in mats {
            dotOffsets.append(off)
            off += w.rows * n
        }
        // The dots buffer holds all matrices' int32 outputs only when they fit; otherwise one by one.
        let capacity = maxBatch * max(hp.embedding, hp.feedForward, hp.qWidth, hp.kvWidth)
        let groups: [[Int]] = off <= capacity ? [Array(mats.indices)] : mats.indices.map { [$0] }
        for group in groups {
            let totalRows = group.reduce(0) { $0 + mats[$1].0.rows }
            pool.parallelFor(totalRows, granularity: 64) { start, end in
                var base = 0
                for mi in group {
                    let (w, out) = mats[mi]
                    let r0 = max(start - base, 0), r1 = min(end - base, w.rows)
                    base += w.rows
                    if r0 >= r1 { continue }
                    let K = Int64(w.columns)
                    let M = w.rows
                    let alpha = w.alpha, scale = w.scale
                    if w.type == .i2_s {
                        let dp = dotsBase + (groups.count == 1 ? dotOffsets[mi] : 0)
                        table.i2s_gemm!(w.data.assumingMemoryBound(to: UInt8.self), K, Int64(r0), Int64(r1),
                                        q8, K, Int64(n), dp, Int64(M))
                        for t in 0..<n {
                            let s = actScale[t], sum = actSum[t]
                            let dt = dp + t * M, ot = out + t * M
                            for m in r0..<r1 {
                                dt[m] = dt[m] &- sum
                                // ((Σ T·q) / s · α) · scale, in that order (the reference's).
                                ot[m] = Float(dt[m]) / s * alpha * scale
                            }
                        }
                    } else {
                        let fn = w.type == .tq2_0 ? table.tq2_gemm! : table.tq1_gemm!
                        fn(w.data, K, Int64(r0), Int64(r1), q8, K, Int64(n), out, Int64(M))
                        for t in 0..<n {
                            let s = actScale[t]
                            let ot = out + t * M
                            for m in r0..<r1 { ot[m] = ot[m] / s * alpha * scale }
                        }
                    }
                }
            }
            if let sink {
                for mi in group {
                    let (w, out) = mats[mi]
                    if w.type == .i2_s {
                        sink.ints(prefix + names[mi] + ".dot", rows: n, cols: w.rows,
                                  dotsBase + (groups.count == 1 ? dotOffsets[mi] : 0))
                    }
                    sink.floats(prefix + names[mi], rows: n, cols: w.rows, out)
                }
            }
        }
    }

    private func prepareRope(n: Int, pos0: Int, positions: [Int]?) {
        let half = hp.ropeDims / 2
        let thetaScale = powf(hp.ropeBase, -2.0 / Float(hp.ropeDims))
        for t in 0..<n {
            var theta = Float(positions?[t] ?? pos0 + t)
            for i in 0..<half {
                ropeCos[t * half + i] = cosf(theta)
                ropeSin[t * half + i] = sinf(theta)
                theta *= thetaScale
            }
        }
    }

    /// NEOX RoPE (spec §4.3): pairs (i, i + rot/2) within each head.
    private func applyRope(_ buf: UnsafeMutablePointer<Float>, heads: Int, n: Int) {
        let D = hp.headDim, half = hp.ropeDims / 2
        let ropeCos = self.ropeCos, ropeSin = self.ropeSin
        perToken(n) { t in
            for h in 0..<heads {
                let v = buf + t * heads * D + h * D
                for i in 0..<half {
                    let c = ropeCos[t * half + i], s = ropeSin[t * half + i]
                    let a = v[i], b = v[i + half]
                    v[i] = a * c - b * s
                    v[i + half] = a * s + b * c
                }
            }
        }
    }

    /// K and V rows into the F16 cache; layout per layer [kvHead][position][headDim].
    private func storeKV(layer l: Int, n: Int, pos0: Int) {
        let D = hp.headDim, kvHeads = hp.kvHeads, kvWidth = hp.kvWidth, ctx = contextLength
        let kc = kCache[l], vc = vCache[l], kb = self.kb, vb = self.vb
        perToken(n) { t in
            for g in 0..<kvHeads {
                let dst = g * ctx * D + (pos0 + t) * D
                let ks = kb + t * kvWidth + g * D
                let vs = vb + t * kvWidth + g * D
                for i in 0..<D {
                    kc[dst + i] = tk_f32_to_f16(ks[i])
                    vc[dst + i] = tk_f32_to_f16(vs[i])
                }
            }
        }
    }

    /// Causal GQA attention over the cache for the batch's queries (spec §4.4, §4.7). In a tree
    /// pass a token sees the cached prefix and its own path only: the scores of the slots it
    /// does not see are dropped before the softmax, so the sums run over exactly the values, in
    /// exactly the order, of a sequential pass over that path.
    private func attention(layer l: Int, n: Int, pos0: Int, tree: TreeLayout?) {
        let D = hp.headDim, H = hp.heads, group = hp.heads / hp.kvHeads
        let scale = 1 / sqrtf(Float(D))
        let path = kernels.table.pointee.path
        let kc = kCache[l], vc = vCache[l]
        let ctx = contextLength
        let roundP = n == 1 && tree == nil
        let scores = self.scores, qh16 = self.qh16, qb = self.qb, attn = self.attn
        pool.parallelChunks(n * H) { part, start, end in
            let sc = scores + part * ctx
            let qh = qh16 + part * D
            for job in start..<end {
                // Head-major: each thread gets whole heads over all tokens, so the causal
                // lengths (short for early tokens, long for late ones) are split evenly.
                let h = job / n, t = job % n
                let g = h / group
                let q = qb + t * hp.qWidth + h * D
                for i in 0..<D { qh[i] = roundF16(q[i]) }
                let kbase = kc + g * ctx * D
                tk_attn_scores(kbase, Int64(D), Int64(pos0 + t + 1), qh, sc, path)
                var len = pos0 + t + 1
                var prefix = len
                if let tree {
                    // Keep the prefix and this token's path (ascending slots, so in place).
                    prefix = tree.prefix
                    let slots = tree.slots[t]
                    for (k, s) in slots.enumerated() { sc[prefix + k] = sc[Int(s)] }
                    len = prefix + slots.count
                }
                var mx = -Float.infinity
                for j in 0..<len {
                    sc[j] *= scale
                    mx = max(mx, sc[j])
                }
                var sum: Double = 0
                for j in 0..<len {
                    let e = expf(sc[j] - mx)
                    sc[j] = e
                    sum += Double(e)
                }
                let inv = Float(1 / sum)
                for j in 0..<len {
                    sc[j] *= inv
                    if roundP { sc[j] = roundF16(sc[j]) }
                }
                let o = attn + t * hp.qWidth + h * D
                let vbase = vc + g * ctx * D
                if let tree {
                    tree.slots[t].withUnsafeBufferPointer { sl in
                        tk_attn_values(vbase, Int64(D), Int64(prefix), sl.baseAddress, Int64(sl.count), sc, o, path)
                    }
                } else {
                    tk_attn_values(vbase, Int64(D), Int64(len), nil, 0, sc, o, path)
                }
            }
        }
    }

    /// The Q8_0 copy multiplies int8 by int8: the inputs are quantized to Q8_0 blocks first
    /// (an approximation on top of the copy's own; `bench --lm-head-eval` measures both together).
    private func quantizedInput(_ xin: UnsafePointer<Float>, nt: Int) -> [UInt8] {
        let d = hp.embedding
        let rowBytes = GGMLType.q8_0.rowBytes(d)
        var xq = [UInt8](repeating: 0, count: nt * rowBytes)
        xq.withUnsafeMutableBytes { buf in
            for t in 0..<nt { tk_quantize_row_q8_0(xin + t * d, buf.baseAddress! + t * rowBytes, Int64(d)) }
        }
        return xq
    }

    /// LM head over the whole vocabulary for `nt` rows of f16-rounded inputs.
    private func lmHead(rowsOf xin: UnsafePointer<Float>, nt: Int, out: UnsafeMutablePointer<Float>) {
        if let copy = headCopy {
            let d = hp.embedding, V = hp.vocabSize
            let path = kernels.table.pointee.path
            let xq = quantizedInput(xin, nt: nt)
            xq.withUnsafeBytes { xb in
                pool.parallelFor(V, granularity: 64) { r0, r1 in
                    tk_q8s_q8_0_gemm(copy.values, copy.scales, Int64(d), Int64(r0), Int64(r1), xb.baseAddress!, Int64(nt),
                                     out, Int64(V), path)
                }
            }
            return
        }
        let w = model.output
        let fn = floatGemm(w.type)
        let d = hp.embedding, V = hp.vocabSize
        pool.parallelFor(V, granularity: 64) { r0, r1 in
            fn(w.data, Int64(d), Int64(r0), Int64(r1), xin, Int64(d), Int64(nt), out, Int64(V))
        }
    }

    /// The LM-head values of the given vocabulary rows for one input (label-only logits).
    private func lmRows(_ ids: [Int32], x xin: UnsafePointer<Float>) -> [Float] {
        let w = model.output, d = Int64(hp.embedding)
        var out = [Float](repeating: 0, count: ids.count)
        // The gemm writes out[id] for rows [id, id + 1) (ldo 0), so the base is shifted by id.
        if let copy = headCopy {
            let xq = quantizedInput(xin, nt: 1)  // once for all ids
            let path = kernels.table.pointee.path
            xq.withUnsafeBytes { xb in
                out.withUnsafeMutableBufferPointer { o in
                    for (k, id) in ids.enumerated() {
                        tk_q8s_q8_0_gemm(copy.values, copy.scales, d, Int64(id), Int64(id) + 1, xb.baseAddress!, 1, o.baseAddress! + k - Int(id), 0, path)
                    }
                }
            }
        } else {
            let fn = floatGemm(w.type)
            out.withUnsafeMutableBufferPointer { o in
                for (k, id) in ids.enumerated() {
                    fn(w.data, d, Int64(id), Int64(id) + 1, xin, d, 1, o.baseAddress! + k - Int(id), 0)
                }
            }
        }
        return out
    }

    private func floatGemm(_ type: GGMLType) -> tk_f_gemm_fn {
        let t = kernels.table.pointee
        switch type {
        case .f16: return t.f16_gemm!
        case .bf16: return t.bf16_gemm!
        case .q8_0: return t.q8_0_gemm!
        case .q6_K: return t.q6_k_gemm!
        default: return f32GemmThunk
        }
    }
}

/// F32 LM head (rare: test files) through a C-compatible thunk.
private let f32GemmThunk: tk_f_gemm_fn = { w, K, r0, r1, x, ldx, nt, out, ldo in
    let wf = w!.assumingMemoryBound(to: Float.self)
    for t in 0..<Int(nt) {
        for m in Int(r0)..<Int(r1) {
            var acc: Float = 0
            for k in 0..<Int(K) { acc += wf[m * Int(K) + k] * x![t * Int(ldx) + k] }
            out![t * Int(ldo) + m] = acc
        }
    }
}
