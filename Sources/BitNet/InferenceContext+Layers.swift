#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

/// The building blocks of a layer: norms, activation quantization and BitLinear, RoPE, the KV
/// store and attention.
extension InferenceContext {
    // MARK: - Building blocks

    func dequantizeRow(_ w: WeightMatrix, row: Int, into y: UnsafeMutablePointer<Float>) {
        let K = w.columns
        let rowPtr = w.data + row * w.type.rowBytes(K)
        if let dequant = kernels.traits(w.type)?.dequant_row {
            dequant(rowPtr, y, Int64(K))
        } else if w.type == .i2_s {
            tk_dequant_row_i2s(w.data + row * K / 4, w.alpha, y, Int64(K))  // needs the tensor's α
        } else {
            y.update(from: rowPtr.assumingMemoryBound(to: Float.self), count: K)  // F32
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
    func addResidual(n: Int) {
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
        // One lookup per matrix, not one per thread chunk (the loader admits ternary types only).
        let traits = mats.map { kernels.traits($0.0.type)! }
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
                    if let gemm = traits[mi].gemm_i2s {
                        let dp = dotsBase + (groups.count == 1 ? dotOffsets[mi] : 0)
                        gemm(w.data.assumingMemoryBound(to: UInt8.self), K, Int64(r0), Int64(r1),
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
                        traits[mi].gemm_i8!(w.data, K, Int64(r0), Int64(r1), q8, K, Int64(n), out, Int64(M))
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

    func prepareRope(n: Int, pos0: Int, positions: [Int]?) {
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

    /// y += bias for each token (the `llama` graph's optional projection biases).
    func addBias(_ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, width: Int, n: Int) {
        guard let bias else { return }
        perToken(n) { t in
            let row = y + t * width
            for i in 0..<width { row[i] += bias[i] }
        }
    }

    /// RoPE within each head: NEOX pairs (i, i + rot/2) (spec §4.3) for the `bitnet*` graphs,
    /// NORM pairs (2i, 2i + 1) for `llama` files (whose converter permuted Q/K to match).
    func applyRope(_ buf: UnsafeMutablePointer<Float>, heads: Int, n: Int) {
        let D = hp.headDim, half = hp.ropeDims / 2
        let ropeCos = self.ropeCos, ropeSin = self.ropeSin
        if hp.rope == .norm {
            perToken(n) { t in
                for h in 0..<heads {
                    let v = buf + t * heads * D + h * D
                    for i in 0..<half {
                        let c = ropeCos[t * half + i], s = ropeSin[t * half + i]
                        let a = v[2 * i], b = v[2 * i + 1]
                        v[2 * i] = a * c - b * s
                        v[2 * i + 1] = a * s + b * c
                    }
                }
            }
            return
        }
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
    func storeKV(layer l: Int, n: Int, pos0: Int) {
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
    func attention(layer l: Int, n: Int, pos0: Int, tree: TreeLayout?) {
        let D = hp.headDim, H = hp.heads, group = hp.heads / hp.kvHeads
        let scale = 1 / sqrtf(Float(D))
        let table = kernels.table.pointee
        let scoreRows = table.attn_scores!, valueRows = table.attn_values!
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
                scoreRows(kbase, Int64(D), Int64(pos0 + t + 1), qh, sc)
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
                        valueRows(vbase, Int64(D), Int64(prefix), sl.baseAddress, Int64(sl.count), sc, o)
                    }
                } else {
                    valueRows(vbase, Int64(D), Int64(len), nil, 0, sc, o)
                }
            }
        }
    }
}
