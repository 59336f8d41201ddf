import GGUF

/// The FFN gate activation. `bitnet-b1.58`/`bitnet-25` always use ReLU² (spec §4); mainline
/// `bitnet` files say which in `bitnet.hidden_activation` (SiLU when absent).
public enum FFNActivation: String, Sendable {
    case relu2
    case silu
}

/// The forward pass a file runs (spec model-families §10): which FFN activation, whether the
/// sub-norms exist, which RoPE, which head. Chosen from more than the architecture string — a
/// 1bitLLM model converted by a 2026 converter says `bitnet-b1.58` but is a SiLU `bitnet` model —
/// and overridable (`model.graph`, `--graph`).
public enum ModelGraph: String, Sendable, CaseIterable {
    /// BitNet b1.58 2B4T (`bitnet-b1.58`, `bitnet-25`): ReLU², sub-norms, NEOX RoPE.
    case bitnet158 = "bitnet-b1.58"
    /// Mainline `bitnet` (1bitLLM bitnet_b1_58-large/-3B): SiLU-gated FFN (or the file's
    /// `bitnet.hidden_activation`), sub-norms, NEOX RoPE.
    case bitnet
    /// `llama` with ternary weights (Llama3-8B-1.58, Falcon3-1.58bit, Falcon-E): SwiGLU, no
    /// sub-norms, NORM (adjacent-pair) RoPE, optional biases, `output.weight` or the tied embedding.
    case llama
}

/// Which elements RoPE rotates together.
public enum RopeStyle: String, Sendable {
    /// (i, i + rot/2): the `bitnet*` graphs (and HF's rotate-half).
    case neox
    /// (2i, 2i + 1): `llama` files, whose Q/K rows the converter permuted.
    case norm
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
    public var graph: ModelGraph = .bitnet158
    /// Why this graph was chosen (shown by `inspect`).
    public var graphReason: String = ""
    public var rope: RopeStyle = .neox

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
    /// nil in the `llama` graph.
    public var attnSubNorm: UnsafePointer<Float>?
    public var o: WeightMatrix
    public var ffnNorm: UnsafePointer<Float>
    public var gate: WeightMatrix
    public var up: WeightMatrix
    /// nil in the `llama` graph.
    public var ffnSubNorm: UnsafePointer<Float>?
    public var down: WeightMatrix
    /// Optional biases (F32), added after the projection.
    public var qBias: UnsafePointer<Float>? = nil
    public var kBias: UnsafePointer<Float>? = nil
    public var vBias: UnsafePointer<Float>? = nil
    public var oBias: UnsafePointer<Float>? = nil
}

/// A loaded BitNet model: the mapped file, its hyper-parameters and pointers to every weight.
/// Nothing is copied: all pointers are into the read-only mapping owned by `file`.
public final class BitNetModel: @unchecked Sendable {
    public static let supportedArchitectures = ["bitnet-b1.58", "bitnet-25", "bitnet", "llama"]

    public let file: GGUFFile
    public let hp: HyperParameters
    public let layers: [LayerWeights]
    public let tokenEmbedding: WeightMatrix
    public let outputNorm: UnsafePointer<Float>
    /// The LM head: `output.weight` in the `llama` graph when present, else the tied token
    /// embedding (the `bitnet*` graphs always use `token_embd`, as bitnet.cpp: spec
    /// model-families §3.3, §10 rule 2).
    public let output: WeightMatrix
    public let tiedOutput: Bool
    /// A `bitnet*` file with an `output.weight` the graph does not use (shown by `inspect`).
    public let ignoredOutputWeight: Bool
    /// The I2_S block the file is read with (128: the published layout; 64: ARM conversions).
    public let i2sBlock: Int
    /// Anonymous copies of 64-block I2_S tensors repacked for the kernels (freed with the model,
    /// or when loading fails half-way).
    private let repacked: RepackedTensors
    /// Bytes of those copies (model memory besides the mapping).
    public var repackedBytes: Int { repacked.bytes }

    public convenience init(path: String, graph: ModelGraph? = nil, i2sBlock: Int = 128) throws {
        try self.init(file: GGUFFile(path: path), graph: graph, i2sBlock: i2sBlock)
    }

    /// The graph spec model-families §10 assigns a file, with the reason.
    public static func autoGraph(file: GGUFFile) -> (ModelGraph, String) {
        switch file.architecture {
        case "llama": return (.llama, "general.architecture is llama")
        case "bitnet": return (.bitnet, "general.architecture is bitnet (mainline: SiLU unless bitnet.hidden_activation says otherwise)")
        case "bitnet-25": return (.bitnet158, "general.architecture is bitnet-25 (BitNet b1.58 2B4T: ReLU²)")
        default:
            // `bitnet-b1.58`: 2B4T, unless it is a 1bitLLM model written by a 2026 converter.
            let a = file.architecture ?? ""
            let spm = file.metadata["tokenizer.ggml.model"]?.string == "llama"
            let layers = file.metadata[a + ".block_count"]?.integer ?? 0
            let heads = file.metadata[a + ".attention.head_count"]?.integer ?? 0
            let kv = file.metadata[a + ".attention.head_count_kv"]?.integer ?? heads
            if spm && (layers == 24 || layers == 26) && heads == kv {
                return (.bitnet, "general.architecture is bitnet-b1.58, but a SentencePiece vocabulary, \(layers) layers and heads = kv heads mark a converted 1bitLLM bitnet_b1_58 model (SiLU); --graph bitnet-b1.58 overrides")
            }
            return (.bitnet158, "general.architecture is bitnet-b1.58 (BitNet b1.58 2B4T: ReLU²)")
        }
    }

    public init(file: GGUFFile, graph forced: ModelGraph? = nil, i2sBlock: Int = 128) throws {
        self.file = file
        precondition(i2sBlock == 128 || i2sBlock == 64, "I2_S blocks are 128 or 64 values")
        self.i2sBlock = i2sBlock
        let copies = RepackedTensors()
        repacked = copies
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

        var (graph, graphReason) = Self.autoGraph(file: file)
        if let forced, forced != graph {
            graphReason = "forced by model.graph / --graph (automatic choice: \(graph.rawValue), because \(graphReason))"
            graph = forced
        }
        if graph == .llama && ropeDims != headDim {
            throw fail(key: arch + ".rope.dimension_count", "rope.dimension_count \(ropeDims) ≠ head size \(headDim) (llama files rotate whole heads)")
        }
        if graph == .llama && file.metadata[arch + ".attention.layer_norm_rms_epsilon"] == nil {
            throw fail("missing metadata key \(arch).attention.layer_norm_rms_epsilon (required by the llama graph)")
        }
        var activation = FFNActivation.relu2
        if graph == .llama { activation = .silu }
        if graph == .bitnet {
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
            var data = file.data(of: t)
            if t.type == .i2_s && i2sBlock == 64 {
                let bytes = rows * cols / 4
                let copy = copies.allocate(bytes + 32)
                I2SLayout.repack64To128(data, copy, byteCount: bytes)
                copy.storeBytes(of: alpha, toByteOffset: bytes, as: Float.self)
                data = UnsafeRawPointer(copy)
            }
            return WeightMatrix(name: name, type: t.type, rows: rows, columns: cols, data: data,
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
        let outputTensor = file.tensor(named: "output.weight")
        ignoredOutputWeight = outputTensor != nil && graph != .llama
        if let outT = outputTensor, graph == .llama {
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
        /// An optional F32 bias of `width` values (the `llama` graph's q/k/v/o biases).
        func bias(_ name: String, _ width: Int) throws -> UnsafePointer<Float>? {
            guard file.tensor(named: name) != nil else { return nil }
            guard graph == .llama || graph == .bitnet158 else { throw fail("tensor \(name): biases are not part of the \(graph.rawValue) graph") }
            return try norm(name, width)
        }
        let subNorms = graph != .llama
        var layers: [LayerWeights] = []
        for l in 0..<nLayers {
            let p = "blk.\(l)."
            if !subNorms, let extra = file.tensor(named: p + "attn_sub_norm.weight") {
                throw fail(tensor: extra, "tensor \(extra.name) belongs to the bitnet graphs, not to llama; is the graph right? (\(graphReason))")
            }
            var layer = LayerWeights(
                attnNorm: try norm(p + "attn_norm.weight", embd),
                q: try matrix(p + "attn_q.weight", cols: embd, rows: embd, ternary: true),
                k: try matrix(p + "attn_k.weight", cols: embd, rows: kvWidth, ternary: true),
                v: try matrix(p + "attn_v.weight", cols: embd, rows: kvWidth, ternary: true),
                attnSubNorm: subNorms ? try norm(p + "attn_sub_norm.weight", embd) : nil,
                o: try matrix(p + "attn_output.weight", cols: embd, rows: embd, ternary: true),
                ffnNorm: try norm(p + "ffn_norm.weight", embd),
                gate: try matrix(p + "ffn_gate.weight", cols: embd, rows: ff, ternary: true),
                up: try matrix(p + "ffn_up.weight", cols: embd, rows: ff, ternary: true),
                ffnSubNorm: subNorms ? try norm(p + "ffn_sub_norm.weight", ff) : nil,
                down: try matrix(p + "ffn_down.weight", cols: ff, rows: embd, ternary: true))
            layer.qBias = try bias(p + "attn_q.bias", embd)
            layer.kBias = try bias(p + "attn_k.bias", kvWidth)
            layer.vBias = try bias(p + "attn_v.bias", kvWidth)
            layer.oBias = try bias(p + "attn_output.bias", embd)
            layers.append(layer)
        }
        self.layers = layers
        hp = HyperParameters(
            architecture: arch, name: file.metadata["general.name"]?.string ?? "", vocabSize: vocab,
            trainedContext: ctx, embedding: embd, layers: nLayers, feedForward: ff, heads: heads,
            kvHeads: kvHeads, headDim: headDim, ropeDims: ropeDims, ropeBase: base, rmsEpsilon: eps,
            activation: activation, graph: graph, graphReason: graphReason, rope: graph == .llama ? .norm : .neox)
    }

    /// Bytes of the KV cache for `tokens` positions (F16 K and V).
    public func kvCacheBytes(tokens: Int) -> Int {
        hp.layers * 2 * hp.kvWidth * 2 * tokens
    }
}
