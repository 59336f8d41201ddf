#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

/// The LM head: the file's own weights, or a Q8_0 copy built at load time.
extension InferenceContext {
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
        let bytes = model.q8HeadCopyBytes
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

    /// The Q8_0 copy multiplies int8 by int8: the inputs are quantized to Q8_0 blocks first
    /// (an approximation on top of the copy's own; `bench --lm-head-eval` measures both together).
    func quantizedInput(_ xin: UnsafePointer<Float>, nt: Int) -> [UInt8] {
        let d = hp.embedding
        let rowBytes = GGMLType.q8_0.rowBytes(d)
        var xq = [UInt8](repeating: 0, count: nt * rowBytes)
        xq.withUnsafeMutableBytes { buf in
            for t in 0..<nt { tk_quantize_row_q8_0(xin + t * d, buf.baseAddress! + t * rowBytes, Int64(d)) }
        }
        return xq
    }

    /// LM head over the whole vocabulary for `nt` rows of f16-rounded inputs.
    func lmHead(rowsOf xin: UnsafePointer<Float>, nt: Int, out: UnsafeMutablePointer<Float>) {
        if let copy = headCopy {
            let d = hp.embedding, V = hp.vocabSize
            let q8s = kernels.table.pointee.q8s_gemm!
            let xq = quantizedInput(xin, nt: nt)
            xq.withUnsafeBytes { xb in
                pool.parallelFor(V, granularity: 64) { r0, r1 in
                    q8s(copy.values, copy.scales, Int64(d), Int64(r0), Int64(r1), xb.baseAddress!, Int64(nt),
                        out, Int64(V))
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
    func lmRows(_ ids: [Int32], x xin: UnsafePointer<Float>) -> [Float] {
        let w = model.output, d = Int64(hp.embedding)
        var out = [Float](repeating: 0, count: ids.count)
        // The gemm writes out[id] for rows [id, id + 1) (ldo 0), so the base is shifted by id.
        if let copy = headCopy {
            let xq = quantizedInput(xin, nt: 1)  // once for all ids
            let q8s = kernels.table.pointee.q8s_gemm!
            xq.withUnsafeBytes { xb in
                out.withUnsafeMutableBufferPointer { o in
                    for (k, id) in ids.enumerated() {
                        q8s(copy.values, copy.scales, d, Int64(id), Int64(id) + 1, xb.baseAddress!, 1, o.baseAddress! + k - Int(id), 0)
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

    /// The float-weight gemm of the head's type on this path (F32: a Swift loop, no C kernel).
    func floatGemm(_ type: GGMLType) -> tk_f_gemm_fn {
        kernels.traits(type)?.gemm_f32 ?? f32GemmThunk
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
