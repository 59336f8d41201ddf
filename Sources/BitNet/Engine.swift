#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GGUF
import Platform

/// One loaded model with its tokenizer, thread pool and KV cache: the entry point the daemon and
/// the CLI use. Calls are blocking and must not overlap (the daemon runs them on one thread).
public final class Engine: @unchecked Sendable {
    public let model: BitNetModel
    public let tokenizer: Tokenizer
    public let context: InferenceContext
    public let loadMs: Double

    public var modelName: String {
        if !model.hp.name.isEmpty { return model.hp.name }
        return String(model.file.path.split(separator: "/").last ?? "")
    }
    public var kernelName: String { context.kernels.name }
    public var modelFileBytes: Int { model.file.fileSize }
    public var contextLength: Int { context.contextLength }
    public var threads: Int { context.pool.threadCount }
    /// The chat format of the file's `tokenizer.chat_template` (nil: not one bitnetd knows).
    public var chatFormat: ChatFormat? { ChatFormat.detect(template: model.file.metadata["tokenizer.chat_template"]?.string) }

    /// The vocabulary arranged for schema-constrained generation, built on first use (or by
    /// `prepareConstrainedDecoding()` at start-up when a route needs it).
    public private(set) lazy var constrainedVocabulary = ConstrainedVocabulary(tokenizer: tokenizer)

    /// Builds the constrained-decoding tables now instead of at the first extraction.
    public func prepareConstrainedDecoding() { _ = constrainedVocabulary }

    public init(modelPath: String, options: EngineOptions) throws {
        let t0 = monotonicMilliseconds()
        let model = try BitNetModel(path: modelPath, graph: options.graph, i2sBlock: options.i2sBlock)
        let tokenizer = try Tokenizer(file: model.file, override: options.preTokenizer)
        let kernels = try KernelSet(forced: options.kernel)
        let ctx = model.contextLength(requested: options.contextLength)
        self.model = model
        self.tokenizer = tokenizer
        self.context = InferenceContext(model: model, kernels: kernels, pool: ThreadPool(threads: options.threads),
                                        contextLength: ctx)
        if options.lmHead == .q8_0 { context.useQ8LMHead(true) }
        self.loadMs = monotonicMilliseconds() - t0
    }

    // MARK: decide

    /// Switches for the decision fast paths (bench compares them; results are the same).
    public struct DecideTuning: Sendable {
        /// Reuse the KV state of the prompt prefix a route shares with its previous request.
        public var prefixCache = true
        /// Compute only the LM-head rows of the labels' first tokens when every label starts at
        /// the same position (the softmax normaliser is common to all labels and cancels).
        public var labelOnlyLogits = true
        public init() {}
    }

    public var tuning = DecideTuning()
    /// Memory budget of the prefix cache; least recently used prefixes are dropped beyond it.
    public var prefixCacheBudget = 64 << 20
    var prefixes: [String: KVSnapshot] = [:]
    var prefixUse: [String] = []

    /// Bytes held by cached prefixes.
    public var prefixCacheBytes: Int { prefixes.values.reduce(0) { $0 + $1.bytes } }

    /// Forgets every cached prefix (config reload, model change).
    public func invalidatePrefixCache() {
        prefixes = [:]
        prefixUse = []
    }

    /// Keeps the KV of `tokens` (positions 0..<count, now in the context) under `key`: if the
    /// slot already holds a prefix, it shrinks to the part both requests share, which is the
    /// route's constant prompt prefix, and no copy is made.
    /// With `copy: false` only an existing slot shrinks (the request's tokens are not in the
    /// cache in order: a later request of a batch).
    func remember(_ key: String, _ tokens: [Int32], copy: Bool = true) {
        if let snap = prefixes[key] {
            let c = commonPrefix(snap.tokens, tokens)
            if c >= max(1, snap.count / 2) || c >= 16 {
                snap.shrink(to: c)
                return
            }
        }
        guard copy, context.position >= tokens.count, !tokens.isEmpty else { return }
        let snap = context.snapshot(tokens: tokens)
        prefixes[key] = snap
        touch(key)
        while prefixCacheBytes > prefixCacheBudget, let oldest = prefixUse.first {
            prefixUse.removeFirst()
            prefixes[oldest] = nil
        }
    }

    func touch(_ key: String) {
        prefixUse.removeAll { $0 == key }
        prefixUse.append(key)
    }
}

func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
    var i = 0
    while i < a.count && i < b.count && a[i] == b[i] { i += 1 }
    return i
}

func logSumExp(_ xs: [Float]) -> Double {
    var mx = -Float.infinity
    for x in xs where x > mx { mx = x }
    var s: Double = 0
    for x in xs { s += exp(Double(x - mx)) }
    return Double(mx) + log(s)
}
