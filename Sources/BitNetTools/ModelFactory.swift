#if canImport(Glibc)
import BitNet
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

/// Writes random, well-conditioned BitNet models with the exact layout of the published files:
/// for tests, `bitnetd dev make-model` and `bitnetd bench --make-2b4t` (spec §2, §4.7).
///
/// Ternary tensors use scale α = 1/√K so a layer neither amplifies nor shrinks its input
/// (random models with larger gains turn chaotic under int8 re-quantization, spec §4.7).
public struct ModelSpec: Sendable {
    public var architecture = "bitnet-b1.58"
    public var name = "bitnetd-random"
    public var layers = 2
    public var embedding = 128
    public var heads = 4
    public var kvHeads = 2
    public var feedForward = 256
    public var vocab = 512
    public var context = 512
    public var ternaryType: GGMLType = .i2_s
    public var embeddingType: GGMLType = .f16
    public var hiddenActivation: FFNActivation? = nil
    public var scaleTensors = false
    public var seed: UInt64 = 1
    public var ropeBase: Float = 500_000
    /// An untied `output.weight` of this type (nil: the head is the tied token embedding).
    public var outputType: GGMLType? = nil
    /// `llama`: add the optional attn_q/k/v/output biases.
    public var biases = false
    /// `tokenizer.ggml.pre` (nil: not written, as in the published 2B4T file).
    public var preTokenizer: String? = nil
    /// `gpt2` (byte-level BPE) or `llama` (SentencePiece, as the 1bitLLM files).
    public var tokenizerModel = "gpt2"

    public init() {}

    /// The shapes of Falcon3-1B-Instruct-1.58bit (spec model-families §7; vocabulary 131,072).
    public static var falcon3_1B: ModelSpec {
        var s = ModelSpec()
        s.architecture = "llama"
        s.name = "falcon3-1b-random"
        s.layers = 18
        s.embedding = 2048
        s.heads = 8
        s.kvHeads = 4
        s.feedForward = 8192
        s.vocab = 131_072
        s.context = 8192
        s.ropeBase = 1_000_042
        s.preTokenizer = "falcon3"
        return s
    }

    /// The shapes of 1bitLLM bitnet_b1_58-large (spec model-families §5; heads 16/16 unverified).
    public static var bitnetLarge: ModelSpec {
        var s = ModelSpec()
        s.architecture = "bitnet"
        s.name = "bitnet-large-random"
        s.layers = 24
        s.embedding = 1536
        s.heads = 16
        s.kvHeads = 16
        s.feedForward = 4096
        s.vocab = 32_002
        s.context = 2048
        s.ropeBase = 10_000
        s.tokenizerModel = "llama"
        return s
    }

    /// The shapes of BitNet b1.58 2B4T (spec §2.2).
    public static var bitnet2B4T: ModelSpec {
        var s = ModelSpec()
        s.name = "bitnet2b-random"
        s.layers = 30
        s.embedding = 2560
        s.heads = 20
        s.kvHeads = 5
        s.feedForward = 6912
        s.vocab = 128_256
        s.context = 4096
        return s
    }
}

public enum ModelFactory {
    /// Writes a model to `path`. `progress(done, total)` is called after each tensor.
    public static func write(_ spec: ModelSpec, to path: String, progress: ((Int, Int) -> Void)? = nil) throws {
        try makeWriter(spec).write(to: path, progress: progress)
    }

    public static func makeWriter(_ spec: ModelSpec) throws -> GGUFWriter {
        let arch = spec.architecture
        guard BitNetModel.supportedArchitectures.contains(arch) else {
            throw RequestError("unsupported architecture \(arch)")
        }
        guard spec.embedding % spec.heads == 0, spec.heads % spec.kvHeads == 0 else {
            throw RequestError("heads must divide the embedding and kv-heads must divide heads")
        }
        let block = spec.ternaryType.blockSize
        guard spec.embedding % block == 0, spec.feedForward % block == 0 else {
            throw RequestError("embedding and ff must be multiples of \(block) for \(spec.ternaryType.name)")
        }
        guard spec.embedding % spec.embeddingType.blockSize == 0 else {
            throw RequestError("embedding must be a multiple of \(spec.embeddingType.blockSize) for \(spec.embeddingType.name)")
        }
        let vocab = spec.tokenizerModel == "llama" ? SyntheticVocabulary.empty : SyntheticVocabulary(size: spec.vocab, seed: spec.seed)
        var w = GGUFWriter()
        let d = spec.embedding, ff = spec.feedForward, hd = d / spec.heads, kv = spec.kvHeads * hd
        w.set("general.architecture", .string(arch))
        w.set("general.name", .string(spec.name))
        w.set(arch + ".vocab_size", .uint32(UInt32(spec.vocab)))
        w.set(arch + ".context_length", .uint32(UInt32(spec.context)))
        w.set(arch + ".embedding_length", .uint32(UInt32(d)))
        w.set(arch + ".block_count", .uint32(UInt32(spec.layers)))
        w.set(arch + ".feed_forward_length", .uint32(UInt32(ff)))
        w.set(arch + ".rope.dimension_count", .uint32(UInt32(hd)))
        w.set(arch + ".attention.head_count", .uint32(UInt32(spec.heads)))
        w.set(arch + ".attention.head_count_kv", .uint32(UInt32(spec.kvHeads)))
        w.set("tokenizer.ggml.add_bos_token", .bool(true))
        w.set(arch + ".attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.set(arch + ".rope.freq_base", .float32(spec.ropeBase))
        w.set("general.file_type", .uint32(spec.ternaryType == .i2_s ? 40 : spec.ternaryType == .tq2_0 ? 37 : 36))
        if let act = spec.hiddenActivation, arch == "bitnet" {
            w.set("bitnet.hidden_activation", .string(act.rawValue))
        }
        if spec.tokenizerModel == "llama" {
            // SentencePiece, as bitnet.cpp's converter writes it (spec model-families §5).
            let sp = SyntheticSentencePiece(size: spec.vocab, seed: spec.seed)
            w.set("tokenizer.ggml.model", .string("llama"))
            w.set("tokenizer.ggml.pre", .string("default"))
            w.set("tokenizer.ggml.tokens", .array(.string(sp.tokens)))
            w.set("tokenizer.ggml.scores", .array(.float32(sp.scores)))
            w.set("tokenizer.ggml.token_type", .array(.int32(sp.types)))
            w.set("tokenizer.ggml.bos_token_id", .uint32(1))
            w.set("tokenizer.ggml.eos_token_id", .uint32(2))
            w.set("tokenizer.ggml.unknown_token_id", .uint32(0))
            w.set("tokenizer.ggml.add_space_prefix", .bool(true))
        } else {
        w.set("tokenizer.ggml.model", .string("gpt2"))
        if let pre = spec.preTokenizer { w.set("tokenizer.ggml.pre", .string(pre)) }
        w.set("tokenizer.ggml.tokens", .array(.string(vocab.tokens)))
        w.set("tokenizer.ggml.scores", .array(.float32(vocab.types.map { $0 == 3 ? -1000 : 0 })))
        w.set("tokenizer.ggml.token_type", .array(.int32(vocab.types)))
        w.set("tokenizer.ggml.merges", .array(.string(vocab.merges)))
        w.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(vocab.bos)))
        w.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(vocab.eos)))
        w.set("tokenizer.ggml.padding_token_id", .uint32(UInt32(vocab.eos)))
        w.set("tokenizer.chat_template", .string(
            "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"))
        }
        w.set("general.quantization_version", .uint32(2))

        let seed = spec.seed
        let embType = spec.embeddingType
        let V = spec.vocab
        // Embedding: N(0, (4/√d)²) so tied logits have a standard deviation of about 4.
        w.addTensor("token_embd.weight", type: embType, dims: [d, V]) { buf in
            var rng = SplitMixXoshiro(seed: seed &+ 0x1000)
            let sigma = 4 / Float(d).squareRoot()
            encodeFloatRows(into: buf, type: embType, rows: V, cols: d) { _ in gaussian(&rng) * sigma }
        }
        if let outType = spec.outputType {
            // An untied head: N(0, (4/√d)²) like the embedding, from its own stream.
            w.addTensor("output.weight", type: outType, dims: [d, V]) { buf in
                var rng = SplitMixXoshiro(seed: seed &+ 0x2000)
                let sigma = 4 / Float(d).squareRoot()
                encodeFloatRows(into: buf, type: outType, rows: V, cols: d) { _ in gaussian(&rng) * sigma }
            }
        }
        let subNorms = arch != "llama"
        // Physical order of the published file (spec §2.5): blocks in lexicographic order.
        let blockOrder = (0..<spec.layers).map { String($0) }.sorted()
        var tensorSeed = seed &* 7919
        for b in blockOrder {
            let p = "blk.\(b)."
            func next() -> UInt64 {
                tensorSeed &+= 0x9E37_79B9
                return tensorSeed
            }
            addNorm(&w, p + "attn_norm.weight", d, next())
            addTernary(&w, p + "ffn_down.weight", cols: ff, rows: d, spec, next())
            let s1 = next()
            if subNorms { addNorm(&w, p + "ffn_sub_norm.weight", ff, s1) }
            addTernary(&w, p + "ffn_gate.weight", cols: d, rows: ff, spec, next())
            addTernary(&w, p + "ffn_up.weight", cols: d, rows: ff, spec, next())
            addNorm(&w, p + "ffn_norm.weight", d, next())
            let s2 = next()
            if subNorms { addNorm(&w, p + "attn_sub_norm.weight", d, s2) }
            addTernary(&w, p + "attn_k.weight", cols: d, rows: kv, spec, next())
            addTernary(&w, p + "attn_output.weight", cols: d, rows: d, spec, next())
            addTernary(&w, p + "attn_q.weight", cols: d, rows: d, spec, next())
            addTernary(&w, p + "attn_v.weight", cols: d, rows: kv, spec, next())
            if spec.biases {
                for (n, width) in [("attn_q", d), ("attn_k", kv), ("attn_v", kv), ("attn_output", d)] {
                    addBias(&w, p + n + ".bias", width, next())
                }
            }
        }
        addNorm(&w, "output_norm.weight", d, seed &+ 77)
        return w
    }

    /// A small random bias, N(0, 0.05²).
    static func addBias(_ w: inout GGUFWriter, _ name: String, _ n: Int, _ seed: UInt64) {
        w.addTensor(name, type: .f32, dims: [n]) { buf in
            var rng = SplitMixXoshiro(seed: seed)
            let f = buf.bindMemory(to: Float.self)
            for i in 0..<n { f[i] = 0.05 * gaussian(&rng) }
        }
    }

    static func addNorm(_ w: inout GGUFWriter, _ name: String, _ n: Int, _ seed: UInt64) {
        w.addTensor(name, type: .f32, dims: [n]) { buf in
            var rng = SplitMixXoshiro(seed: seed)
            let f = buf.bindMemory(to: Float.self)
            for i in 0..<n { f[i] = 1 + 0.1 * gaussian(&rng) }
        }
    }

    static func addTernary(_ w: inout GGUFWriter, _ name: String, cols K: Int, rows M: Int, _ spec: ModelSpec, _ seed: UInt64) {
        let type = spec.ternaryType
        let alpha = 1 / Float(K).squareRoot()
        w.addTensor(name, type: type, dims: [K, M]) { buf in
            var rng = SplitMixXoshiro(seed: seed)
            let rowBytes = type.rowBytes(K)
            var trits = [Int8](repeating: 0, count: K)
            for m in 0..<M {
                for k in 0..<K {
                    // P(−1) = P(0) = P(+1) = 1/3.
                    trits[k] = Int8(Int(rng.next() % 3) - 1)
                }
                let row = UnsafeMutableRawBufferPointer(rebasing: buf[(m * rowBytes)..<((m + 1) * rowBytes)])
                TernaryPacking.pack(trits, type: type, scale: alpha, into: row)
            }
            if type == .i2_s {
                let tail = M * K / 4
                buf.storeBytes(of: alpha, toByteOffset: tail, as: Float.self)
                // The 28 bytes after α are undefined in published files; fill them with garbage
                // so that any reader that looks at them fails tests.
                for i in (tail + 4)..<(tail + 32) { buf[i] = 0xA5 }
            }
        }
        if spec.scaleTensors && spec.architecture == "bitnet" {
            let scaleName = String(name.dropLast(7)) + ".scale"
            w.addTensor(scaleName, type: .f32, dims: [1]) { buf in
                var rng = SplitMixXoshiro(seed: seed ^ 0x5CA1E)
                buf.storeBytes(of: 0.5 + Float(rng.next() % 1000) / 1000, as: Float.self)
            }
        }
    }

    static func encodeFloatRows(into buf: UnsafeMutableRawBufferPointer, type: GGMLType, rows: Int, cols: Int,
                                _ value: (Int) -> Float) {
        var row = [Float](repeating: 0, count: cols)
        let rb = type.rowBytes(cols)
        for r in 0..<rows {
            for k in 0..<cols { row[k] = value(r * cols + k) }
            let dst = UnsafeMutableRawBufferPointer(rebasing: buf[(r * rb)..<((r + 1) * rb)])
            FloatPacking.encode(row, type: type, into: dst)
        }
    }
}

/// Box–Muller normal variates.
func gaussian(_ rng: inout SplitMixXoshiro) -> Float {
    let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300)
    let u2 = Double(rng.next() >> 11) / Double(1 << 53)
    return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
}

@inline(__always) private func _log(_ x: Double) -> Double { log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { cos(x) }

/// Encoders for the ternary formats (spec §3.2, §3.5), used to write models.
public enum TernaryPacking {
    /// Packs one row of trits (−1/0/+1, length a multiple of the block size). For I2_S `scale` is
    /// the tensor α written separately by the caller; TQ formats store it per block as f16.
    public static func pack(_ t: [Int8], type: GGMLType, scale: Float, into out: UnsafeMutableRawBufferPointer) {
        switch type {
        case .i2_s:
            for b in 0..<(t.count / 128) {
                for j in 0..<32 {
                    var byte: UInt8 = 0
                    for g in 0..<4 {
                        let code = UInt8(Int(t[128 * b + 32 * g + j]) + 1)
                        byte |= code << (6 - 2 * g)
                    }
                    out[32 * b + j] = byte
                }
            }
        case .tq2_0:
            let d = tk_f32_to_f16(scale)
            for b in 0..<(t.count / 256) {
                let base = 66 * b
                for c in 0..<2 {
                    for m in 0..<32 {
                        var byte: UInt8 = 0
                        for n in 0..<4 {
                            byte |= UInt8(Int(t[256 * b + 128 * c + 32 * n + m]) + 1) << (2 * n)
                        }
                        out[base + 32 * c + m] = byte
                    }
                }
                out[base + 64] = UInt8(d & 0xFF)
                out[base + 65] = UInt8(d >> 8)
            }
        case .tq1_0:
            let d = tk_f32_to_f16(scale)
            for b in 0..<(t.count / 256) {
                let base = 54 * b
                let e = { (i: Int) -> Int in Int(t[256 * b + i]) + 1 }
                func enc(_ trits: [Int]) -> UInt8 {
                    var q = 0
                    for v in trits { q = q * 3 + v }
                    return UInt8((q * 256 + 242) / 243)
                }
                for m in 0..<32 { out[base + m] = enc((0..<5).map { e(m + 32 * $0) }) }
                for m in 0..<16 { out[base + 32 + m] = enc((0..<5).map { e(160 + m + 16 * $0) }) }
                for j in 0..<4 { out[base + 48 + j] = enc((0..<4).map { e(240 + j + 4 * $0) } + [0]) }
                out[base + 52] = UInt8(d & 0xFF)
                out[base + 53] = UInt8(d >> 8)
            }
        default:
            preconditionFailure("\(type.name) is not a ternary type")
        }
    }
}

/// Encoders for float-like formats (embeddings, LM heads).
public enum FloatPacking {
    /// One Q6_K block (ggml block_q6_K: ql[128], qh[64], scales[16], d): a plain round-to-nearest
    /// quantizer (sub-block scale amax/31, super-scale max/127), enough for generated test models.
    static func encodeQ6K(_ x: [Float], into out: UnsafeMutableRawBufferPointer, at base: Int) {
        var sub = [Float](repeating: 0, count: 16)
        for i in 0..<16 { sub[i] = (x[(16 * i)..<(16 * i + 16)].map { abs($0) }.max() ?? 0) / 31 }
        let d = tk_f16_to_f32(tk_f32_to_f16((sub.max() ?? 0) / 127))
        var q = [Int](repeating: 32, count: 256)
        var sc = [Int8](repeating: 0, count: 16)
        for i in 0..<16 {
            let s = d == 0 ? 0 : Int((sub[i] / d).rounded()).clamped(-128, 127)
            sc[i] = Int8(s)
            let step = d * Float(s)
            for j in 0..<16 where step != 0 {
                q[16 * i + j] = Int((x[16 * i + j] / step).rounded()).clamped(-32, 31) + 32
            }
        }
        // Layout (see the reference dequantizer): per half h of 128 values, l in 0..<32:
        // ql[64h + l] = v[l] & 15 | (v[l + 64] & 15) << 4, ql[64h + l + 32] = v[l + 32] & 15 | (v[l + 96] & 15) << 4,
        // qh[32h + l] = v[l] >> 4 | (v[l + 32] >> 4) << 2 | (v[l + 64] >> 4) << 4 | (v[l + 96] >> 4) << 6.
        for h in 0..<2 {
            let v = Array(q[(128 * h)..<(128 * h + 128)])
            for l in 0..<32 {
                let a: Int = v[l], b: Int = v[l + 32], c: Int = v[l + 64], e: Int = v[l + 96]
                let lo0: Int = (a & 15) | ((c & 15) << 4)
                let lo1: Int = (b & 15) | ((e & 15) << 4)
                var hi: Int = a >> 4
                hi |= (b >> 4) << 2
                hi |= (c >> 4) << 4
                hi |= (e >> 4) << 6
                out[base + 64 * h + l] = UInt8(lo0)
                out[base + 64 * h + l + 32] = UInt8(lo1)
                out[base + 128 + 32 * h + l] = UInt8(hi)
            }
        }
        for i in 0..<16 { out[base + 192 + i] = UInt8(bitPattern: sc[i]) }
        out.storeBytes(of: tk_f32_to_f16(d), toByteOffset: base + 208, as: UInt16.self)
    }

    public static func encode(_ x: [Float], type: GGMLType, into out: UnsafeMutableRawBufferPointer) {
        switch type {
        case .f32:
            for (i, v) in x.enumerated() { out.storeBytes(of: v, toByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for (i, v) in x.enumerated() { out.storeBytes(of: tk_f32_to_f16(v), toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16:
            for (i, v) in x.enumerated() {
                let bits = v.bitPattern
                let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
                out.storeBytes(of: UInt16(rounded), toByteOffset: 2 * i, as: UInt16.self)
            }
        case .q8_0:
            for b in 0..<(x.count / 32) {
                let blk = x[(32 * b)..<(32 * b + 32)]
                let amax = blk.map { abs($0) }.max() ?? 0
                let d = amax / 127
                let id: Float = d == 0 ? 0 : 1 / d
                out.storeBytes(of: tk_f32_to_f16(d), toByteOffset: 34 * b, as: UInt16.self)
                for (j, v) in blk.enumerated() {
                    out.storeBytes(of: Int8((v * id).rounded()), toByteOffset: 34 * b + 2 + j, as: Int8.self)
                }
            }
        case .q6_K:
            for b in 0..<(x.count / 256) {
                encodeQ6K(Array(x[(256 * b)..<(256 * b + 256)]), into: out, at: 210 * b)
            }
        default:
            preconditionFailure("encoding \(type.name) is not supported")
        }
    }
}

extension Int {
    fileprivate func clamped(_ lo: Int, _ hi: Int) -> Int { Swift.min(Swift.max(self, lo), hi) }
}
