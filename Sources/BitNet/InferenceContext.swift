#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

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
    public internal(set) var position = 0
    /// The Q8_0 LM-head copy (`useQ8LMHead`) in split layout, one allocation: values (rows × K
    /// int8), then block scales (rows × K/32 f32). nil = the file's own head is used.
    struct HeadCopy {
        let values: UnsafeMutablePointer<Int8>
        let scales: UnsafeMutablePointer<Float>
        let bytes: Int
    }
    var headCopy: HeadCopy?
    /// The type of the LM head in use: the file's, or `.q8_0` for the copy.
    public var lmHeadType: GGMLType { headCopy == nil ? model.output.type : .q8_0 }
    /// Bytes of the LM-head copy in use (0 = the file's own head).
    public var lmHeadCopyBytes: Int { headCopy?.bytes ?? 0 }

    let hp: HyperParameters
    var kCache: [UnsafeMutablePointer<UInt16>]
    var vCache: [UnsafeMutablePointer<UInt16>]

    // Scratch, sized for maxBatch tokens.
    let x: UnsafeMutablePointer<Float>
    let normed: UnsafeMutablePointer<Float>
    let q8: UnsafeMutablePointer<Int8>
    let actScale: UnsafeMutablePointer<Float>
    let actSum: UnsafeMutablePointer<Int32>
    let qb: UnsafeMutablePointer<Float>
    let kb: UnsafeMutablePointer<Float>
    let vb: UnsafeMutablePointer<Float>
    let attn: UnsafeMutablePointer<Float>
    let gate: UnsafeMutablePointer<Float>
    let up: UnsafeMutablePointer<Float>
    let dots: UnsafeMutablePointer<Int32>
    let scores: UnsafeMutablePointer<Float>     // threads × contextLength
    let qh16: UnsafeMutablePointer<Float>       // threads × headDim
    let ropeCos: UnsafeMutablePointer<Float>    // maxBatch × ropeDims/2
    let ropeSin: UnsafeMutablePointer<Float>
    var allocations: [UnsafeMutableRawPointer] = []

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

    func forwardBatch(_ tokens: [Int32], logits: LogitRequest, sink: StageSink?, tree: TreeLayout? = nil) -> [Float] {
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
            addBias(w.qBias, qb, width: hp.qWidth, n: n)
            addBias(w.kBias, kb, width: hp.kvWidth, n: n)
            addBias(w.vBias, vb, width: hp.kvWidth, n: n)
            applyRope(qb, heads: hp.heads, n: n)
            applyRope(kb, heads: hp.kvHeads, n: n)
            sinkLayer(sink, name + "q_rope", qb, n, hp.qWidth)
            sinkLayer(sink, name + "k_rope", kb, n, hp.kvWidth)
            storeKV(layer: l, n: n, pos0: pos0)
            attention(layer: l, n: n, pos0: pos0, tree: tree)
            sinkLayer(sink, name + "attn", attn, n, hp.qWidth)
            if let sub = w.attnSubNorm {
                rmsNorm(attn, sub, width: hp.qWidth, n: n, out: normed)
                sinkLayer(sink, name + "attn_sub_norm", normed, n, hp.qWidth)
                quantizeRows(normed, width: hp.qWidth, n: n)
            } else {
                quantizeRows(attn, width: hp.qWidth, n: n)
            }
            bitLinear([(w.o, qb)], n: n, sink: sink, prefix: name, names: ["attn_output"])
            addBias(w.oBias, qb, width: d, n: n)
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
            if let sub = w.ffnSubNorm {
                rmsNorm(gate, sub, width: ff, n: n, out: normed)
                sinkLayer(sink, name + "ffn_sub_norm", normed, n, ff)
                quantizeRows(normed, width: ff, n: n)
            } else {
                quantizeRows(gate, width: ff, n: n)
            }
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

    func sinkLayer(_ sink: StageSink?, _ name: String, _ p: UnsafePointer<Float>, _ rows: Int, _ cols: Int) {
        guard let sink else { return }
        sink.floats(name, rows: rows, cols: cols, p)
    }
}
