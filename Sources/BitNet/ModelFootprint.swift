/// What a model costs in memory besides the daemon itself: the mapped file, the F16 KV cache for
/// the context in use, and the optional Q8_0 LM-head copy. Computed from the model's own
/// hyper-parameters, the same numbers the engine allocates with — for the start-up memory check,
/// before anything is allocated.
public struct ModelFootprint: Sendable, Equatable {
    public var fileBytes: Int
    public var kvCacheBytes: Int
    /// The Q8_0 LM-head copy (`lm_head: q8_0`), 0 without.
    public var headCopyBytes: Int
    public var contextLength: Int
    public var total: Int { fileBytes + kvCacheBytes + headCopyBytes }
}

extension BitNetModel {
    /// The KV-cache length the engine uses: `requested`, or with 0 the trained context capped at
    /// 4096 tokens.
    public func contextLength(requested: Int) -> Int {
        requested > 0 ? requested : min(hp.trainedContext, 4096)
    }

    /// Bytes of the Q8_0 LM-head copy: one int8 per weight and one float scale per 32.
    public var q8HeadCopyBytes: Int {
        output.rows * output.columns + output.rows * (output.columns / 32) * 4
    }

    /// `i2sBlock` 64: the I2_S tensors are repacked into anonymous copies (counted with the
    /// head copy as model memory besides the mapping).
    public func footprint(contextLength requested: Int, q8Head: Bool, i2sBlock: Int = 128) -> ModelFootprint {
        let ctx = contextLength(requested: requested)
        let repack = i2sBlock == 64 ? file.tensors.filter { $0.type == .i2_s }.reduce(0) { $0 + $1.byteCount } : 0
        return ModelFootprint(fileBytes: file.fileSize, kvCacheBytes: kvCacheBytes(tokens: ctx),
                              headCopyBytes: (q8Head ? q8HeadCopyBytes : 0) + repack, contextLength: ctx)
    }

    /// Maps the file (no weight is read) and reports what running it would take.
    public static func footprint(path: String, contextLength: Int, q8Head: Bool, i2sBlock: Int = 128) throws -> ModelFootprint {
        try BitNetModel(path: path).footprint(contextLength: contextLength, q8Head: q8Head, i2sBlock: i2sBlock)
    }
}
