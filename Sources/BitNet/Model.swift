import GGUF

/// The FFN gate activation. `bitnet-b1.58`/`bitnet-25` always use ReLU² (spec §4); mainline
/// `bitnet` files say which in `bitnet.hidden_activation` (SiLU when absent).
public enum FFNActivation: String, Sendable {
    case relu2
    case silu
}

/// Hyper-parameters read from the file and checked for consistency (spec §1.3 step 12, §2.2).
public struct HyperParameters: Sendable {
    public var architecture: String
    public var name: String
    public var vocabSize: Int
    public var trainedContext: Int
    public var embedding: Int
    public var layers: Int
    public var feedForward: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ropeDims: Int
    public var ropeBase: Float
    public var rmsEpsilon: Float
    public var activation: FFNActivation

    public var qWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }
}

/// A weight matrix `y = W·x` of `rows` outputs × `columns` inputs, pointing into the mapping.
public struct WeightMatrix: @unchecked Sendable {
    public var name: String
    public var type: GGMLType
    public var rows: Int
    public var columns: Int
    public var data: UnsafeRawPointer
    /// I2_S tensor scale α (1 for other types).
    public var alpha: Float
    /// Optional per-tensor scale (mainline `bitnet` `*.scale` tensors), 1 when absent.
    public var scale: Float
}

public struct LayerWeights: @unchecked Sendable {
    public var attnNorm: UnsafePointer<Float>
    public var q: WeightMatrix
    public var k: WeightMatrix
    public var v: WeightMatrix
    public var attnSubNorm: UnsafePointer<Float>
    public var o: WeightMatrix
    public var ffnNorm: UnsafePointer<Float>
    public var gate: WeightMatrix
    public var up: WeightMatrix
    public var ffnSubNorm: UnsafePointer<Float>
    public var down: WeightMatrix
}

/// A loaded BitNet model: the mapped file, its hyper-parameters and pointers to every weight.
/// Nothing is copied: all pointers are into the read-only mapping owned by `file`.
public final class BitNetModel: @unchecked Sendable {
    public static let supportedArchitectures = ["bitnet-b1.58", "bitnet-25", "bitnet"]

    public let file: GGUFFile
    public let hp: HyperParameters
    public let layers: [LayerWeights]
    public let tokenEmbedding: WeightMatrix
    public let outputNorm: UnsafePointer<Float>
    /// The LM head: `output.weight` when present, else the tied token embedding.
    public let output: WeightMatrix
    public let tiedOutput: Bool

    public convenience init(path: String) throws {
        try self.init(file: GGUFFile(path: path))
    }

    public init(file: GGUFFile) throws {
        self.file = file
        let path = file.path
        func fail(_ m: String) -> ModelError { ModelError(path: path, m) }
        // Errors about one metadata record or tensor carry its byte offset (README: "model errors").
        func fail(key: String, _ m: String) -> ModelError {
            ModelError(path: path, offset: file.keyOffsets[key], subject: key, m)
        }
        func fail(tensor t: GGUFTensorInfo, at offset: Int? = nil, _ m: String) -> ModelError {
            ModelError(path: path, offset: offset ?? t.infoOffset, subject: t.name, m)
        }

        guard let arch = file.architecture else { throw fail("missing general.architecture") }
        guard Self.supportedArchitectures.contains(arch) else {
            throw fail(key: "general.architecture", "architecture '\(arch)' is not supported (supported: \(Self.supportedArchitectures.joined(separator: ", ")))")
        }
        func int(_ suffix: String, default def: Int? = nil) throws -> Int {
            let key = arch + "." + suffix
            guard let v = file.metadata[key] else {
                if let def { return def }
                throw fail("missing metadata key \(key)")
            }
            guard let i = v.integer, i > 0, i < (1 << 31) else { throw fail(key: key, "\(key) must be a positive integer, got \(v.summary)") }
            return Int(i)
        }
        func float(_ suffix: String, default def: Float) throws -> Float {
            let key = arch + "." + suffix
            guard let v = file.metadata[key] else { return def }
            guard let f = v.float, f.isFinite, f > 0 else { throw fail(key: key, "\(key) must be a positive number, got \(v.summary)") }
            return Float(f)
        }
        let embd = try int("embedding_length")
        let nLayers = try int("block_count")
        let ff = try int("feed_forward_length")
        let heads = try int("attention.head_count")
        let kvHeads = try int("attention.head_count_kv", default: heads)
        guard embd % heads == 0 else { throw fail(key: arch + ".attention.head_count", "embedding_length \(embd) is not a multiple of head_count \(heads)") }
        guard heads % kvHeads == 0 else { throw fail(key: arch + ".attention.head_count_kv", "head_count \(heads) is not a multiple of head_count_kv \(kvHeads)") }
        let headDim = try int("attention.key_length", default: embd / heads)
        guard headDim * heads == embd else { throw fail(key: arch + ".attention.key_length", "key_length \(headDim) × heads \(heads) ≠ embedding \(embd)") }
        let ropeDims = try int("rope.dimension_count", default: headDim)
        guard ropeDims % 2 == 0, ropeDims <= headDim else { throw fail(key: arch + ".rope.dimension_count", "rope.dimension_count \(ropeDims) must be even and ≤ head size \(headDim)") }
        let ctx = try int("context_length", default: 4096)
        let base = try float("rope.freq_base", default: 10000)
        let eps = try float("attention.layer_norm_rms_epsilon", default: 1e-5)

        var activation = FFNActivation.relu2
        if arch == "bitnet" {
            activation = .silu
            if let v = file.metadata["bitnet.hidden_activation"] {
                guard let s = v.string, let a = FFNActivation(rawValue: s.lowercased()) else {
                    throw fail(key: "bitnet.hidden_activation", "bitnet.hidden_activation \(v.summary) is not one of relu2, silu")
                }
                activation = a
            }
        }

        func tensor(_ name: String) throws -> GGUFTensorInfo {
            guard let t = file.tensor(named: name) else { throw fail("missing tensor \(name)") }
            return t
        }
        func norm(_ name: String, _ width: Int) throws -> UnsafePointer<Float> {
            let t = try tensor(name)
            guard t.type == .f32, t.dims == [width] else {
                throw fail(tensor: t, "tensor \(name) must be F32 [\(width)], is \(t.type.name) \(t.dims)")
            }
            let values = file.data(of: t).assumingMemoryBound(to: Float.self)
            try finite(t, values, width)
            return values
        }
        /// Norms and scales are small: a NaN or Inf there poisons every output, so it is refused at
        /// load (with the element's byte offset) instead of surfacing as a NaN decision.
        func finite(_ t: GGUFTensorInfo, _ values: UnsafePointer<Float>, _ count: Int) throws {
            for i in 0..<count where !values[i].isFinite {
                throw fail(tensor: t, at: file.dataStart + t.offset + 4 * i,
                           "tensor \(t.name) holds a non-finite value (\(values[i])) at element \(i)")
            }
        }
        func matrix(_ name: String, cols: Int, rows: Int, ternary: Bool) throws -> WeightMatrix {
            let t = try tensor(name)
            guard t.dims.count == 2, t.dims[0] == cols, t.dims[1] == rows else {
                throw fail(tensor: t, "tensor \(name) has shape \(t.dims), expected [\(cols), \(rows)]")
            }
            if ternary && !t.type.isTernary {
                throw fail(tensor: t, "tensor \(name) is \(t.type.name); this engine runs ternary layers in I2_S, TQ1_0 or TQ2_0")
            }
            var alpha: Float = 1
            if t.type == .i2_s {
                alpha = file.data(of: t).loadUnaligned(fromByteOffset: rows * cols / 4, as: Float.self)
                guard alpha.isFinite, alpha >= 0 else {
                    throw fail(tensor: t, at: file.dataStart + t.offset + rows * cols / 4, "tensor \(name) has an invalid I2_S scale \(alpha)")
                }
            }
            var scale: Float = 1
            let scaleName = name.hasSuffix(".weight") ? String(name.dropLast(7)) + ".scale" : name + ".scale"
            if let s = file.tensor(named: scaleName) {
                guard s.type == .f32, s.elementCount == 1 else { throw fail(tensor: s, "tensor \(scaleName) must be a single F32") }
                scale = file.data(of: s).loadUnaligned(as: Float.self)
                guard scale.isFinite else {
                    throw fail(tensor: s, at: file.dataStart + s.offset, "tensor \(scaleName) holds a non-finite value (\(scale))")
                }
            }
            return WeightMatrix(name: name, type: t.type, rows: rows, columns: cols, data: file.data(of: t),
                                alpha: alpha, scale: scale)
        }

        let embT = try tensor("token_embd.weight")
        guard embT.dims.count == 2, embT.dims[0] == embd else {
            throw fail(tensor: embT, "token_embd.weight has shape \(embT.dims), expected [\(embd), vocab]")
        }
        let vocab = embT.dims[1]
        if let tokens = file.metadata["tokenizer.ggml.tokens"]?.array, tokens.count != vocab {
            throw fail(key: "tokenizer.ggml.tokens", "tokenizer has \(tokens.count) tokens but token_embd.weight has \(vocab) rows")
        }
        if let v = file.metadata[arch + ".vocab_size"]?.integer, Int(v) != vocab {
            throw fail(key: arch + ".vocab_size", "\(arch).vocab_size \(v) ≠ token_embd.weight rows \(vocab)")
        }
        let supportedEmbedding: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q6_K]
        guard supportedEmbedding.contains(embT.type) else {
            throw fail(tensor: embT, "token_embd.weight type \(embT.type.name) is not supported (F32, F16, BF16, Q8_0, Q6_K)")
        }
        tokenEmbedding = WeightMatrix(name: embT.name, type: embT.type, rows: vocab, columns: embd,
                                      data: file.data(of: embT), alpha: 1, scale: 1)
        if let outT = file.tensor(named: "output.weight") {
            guard outT.dims == [embd, vocab], supportedEmbedding.contains(outT.type) else {
                throw fail(tensor: outT, "output.weight must be [\(embd), \(vocab)] in F32/F16/BF16/Q8_0/Q6_K, is \(outT.type.name) \(outT.dims)")
            }
            output = WeightMatrix(name: outT.name, type: outT.type, rows: vocab, columns: embd,
                                  data: file.data(of: outT), alpha: 1, scale: 1)
            tiedOutput = false
        } else {
            output = tokenEmbedding
            tiedOutput = true
        }
        outputNorm = try norm("output_norm.weight", embd)

        let kvWidth = kvHeads * headDim
        var layers: [LayerWeights] = []
        for l in 0..<nLayers {
            let p = "blk.\(l)."
            layers.append(LayerWeights(
                attnNorm: try norm(p + "attn_norm.weight", embd),
                q: try matrix(p + "attn_q.weight", cols: embd, rows: embd, ternary: true),
                k: try matrix(p + "attn_k.weight", cols: embd, rows: kvWidth, ternary: true),
                v: try matrix(p + "attn_v.weight", cols: embd, rows: kvWidth, ternary: true),
                attnSubNorm: try norm(p + "attn_sub_norm.weight", embd),
                o: try matrix(p + "attn_output.weight", cols: embd, rows: embd, ternary: true),
                ffnNorm: try norm(p + "ffn_norm.weight", embd),
                gate: try matrix(p + "ffn_gate.weight", cols: embd, rows: ff, ternary: true),
                up: try matrix(p + "ffn_up.weight", cols: embd, rows: ff, ternary: true),
                ffnSubNorm: try norm(p + "ffn_sub_norm.weight", ff),
                down: try matrix(p + "ffn_down.weight", cols: ff, rows: embd, ternary: true)))
        }
        self.layers = layers
        hp = HyperParameters(
            architecture: arch, name: file.metadata["general.name"]?.string ?? "", vocabSize: vocab,
            trainedContext: ctx, embedding: embd, layers: nLayers, feedForward: ff, heads: heads,
            kvHeads: kvHeads, headDim: headDim, ropeDims: ropeDims, ropeBase: base, rmsEpsilon: eps,
            activation: activation)
    }

    /// Bytes of the KV cache for `tokens` positions (F16 K and V).
    public func kvCacheBytes(tokens: Int) -> Int {
        hp.layers * 2 * hp.kvWidth * 2 * tokens
    }
}
