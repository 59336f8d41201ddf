import JSONSchema
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The session API the daemon and the CLI use (DESIGN.md §3 `BitNet`: decide, generate, score).
// Calls are blocking and run the model on the engine's own threads; call them from a thread of
// your own (never from Swift's cooperative pool). One call at a time per Engine.

/// A kernel path of `CTernaryKernels` (an ISA's traits table).
public enum KernelPath: String, Sendable, CaseIterable {
    case scalar, avx2, avx512, neon, dotprod

    /// `BITNETD_KERNEL` (tests, or to step around a kernel bug); nil when unset or empty. Read
    /// by the executables (the CLI, the daemon), never by the engine itself.
    public static func fromEnvironment() throws -> KernelPath? {
        guard let v = getenv("BITNETD_KERNEL").map({ String(cString: $0) }), !v.isEmpty else { return nil }
        guard let p = KernelPath(rawValue: v) else {
            throw RequestError("BITNETD_KERNEL: unknown kernel path '\(v)' (known: \(allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return p
    }
}

/// Which LM head the engine reads.
public enum LMHead: String, Sendable, CaseIterable {
    /// The file's own weights (exact).
    case file
    /// A Q8_0 copy built at load time: about half the bytes per generated token, logits change
    /// slightly (`bench --lm-head-eval` measures how much).
    case q8_0
}

/// How a model is loaded and run. Every choice is typed: names from a command line or a config
/// file are parsed where they are read (`KernelPath(rawValue:)`, `PreTokenizer(ggmlName:)`, …).
public struct EngineOptions: Sendable {
    /// Worker threads for the matrix kernels; 0 = number of online CPUs.
    public var threads: Int
    /// KV-cache length in tokens; 0 = min(model's trained context, 4096).
    public var contextLength: Int
    /// Forces a kernel path; nil = the fastest the CPU supports.
    public var kernel: KernelPath?
    /// Pre-tokenizer override: nil = from the file (spec §5.2).
    public var preTokenizer: PreTokenizer?
    public var lmHead: LMHead
    /// Forces the forward pass (`model.graph`, `--graph`); nil = chosen from the file.
    public var graph: ModelGraph? = nil
    /// I2_S block of the file: 128 (published/x86 layout, default) or 64 (ARM conversions).
    public var i2sBlock = 128

    public init(threads: Int = 0, contextLength: Int = 0, kernel: KernelPath? = nil, preTokenizer: PreTokenizer? = nil,
                lmHead: LMHead = .file) {
        self.threads = threads
        self.contextLength = contextLength
        self.kernel = kernel
        self.preTokenizer = preTokenizer
        self.lmHead = lmHead
    }
}

/// The outcome of scoring a fixed set of labels after a prompt (DESIGN.md §8 "decide").
public struct DecideResult: Sendable {
    /// Labels in the order they were given.
    public var labels: [String]
    /// Softmax over `logScores`; sums to 1.
    public var probabilities: [Double]
    /// Sum of the label tokens' log-probabilities, up to a constant common to all labels (the
    /// label-only fast path leaves out the normaliser of the first position, which cancels).
    public var logScores: [Double]
    /// Index of the most probable label.
    public var best: Int
    public var promptTokens: Int
    /// Prompt tokens whose KV state was reused from the prefix cache.
    public var cachedTokens: Int
    /// Wall time spent in the engine, milliseconds (for a batch: the whole batch's).
    public var elapsedMs: Double
    /// Number of decisions computed together in the batch this one was part of.
    public var batchSize: Int

    public init(labels: [String], probabilities: [Double], logScores: [Double], best: Int,
                promptTokens: Int, cachedTokens: Int, elapsedMs: Double, batchSize: Int = 1) {
        self.batchSize = batchSize
        self.labels = labels
        self.probabilities = probabilities
        self.logScores = logScores
        self.best = best
        self.promptTokens = promptTokens
        self.cachedTokens = cachedTokens
        self.elapsedMs = elapsedMs
    }
}

/// Sampling and stopping for free generation.
public struct GenerateOptions: Sendable {
    public var maxTokens: Int = 128
    /// 0 = greedy.
    public var temperature: Double = 0.8
    public var topK: Int = 40
    public var topP: Double = 0.95
    public var minP: Double = 0.05
    public var repeatPenalty: Double = 1.0
    public var repeatLastN: Int = 64
    public var seed: UInt64? = nil
    /// Generation stops when the text ends with one of these (the stop string is not returned).
    public var stop: [String] = []
    /// Stop on end-of-generation tokens (`<|end_of_text|>`, `<|eot_id|>`).
    public var stopAtEOG: Bool = true
    /// Wrap the prompt in the trained chat format (spec §5.3).
    public var chat: Bool = false
    public var system: String? = nil
    /// Constrain the output to compact JSON valid for this schema (`task: extract`); `stop` and
    /// `stopAtEOG` do not apply, generation ends when the value is complete.
    public var schema: JSONSchema? = nil
    /// Trace of a constrained generation (tests): for each token, whether it was forced and,
    /// when it was chosen, the ids that were allowed.
    public var traceConstraint: Bool = false

    public init() {}
}

public enum StopReason: String, Sendable {
    case endOfGeneration = "eog"
    case stopString = "stop"
    case maxTokens = "length"
    case contextFull = "context"
    case cancelled = "cancelled"
}

public struct GenerateResult: Sendable {
    public var text: String
    public var promptTokens: Int
    public var cachedTokens: Int
    public var generatedTokens: Int
    public var stopReason: StopReason
    /// Prompt processing time and generation time, milliseconds.
    public var promptMs: Double
    public var generateMs: Double
    /// Of `generatedTokens`, those forced by a schema (fed to the model without sampling).
    public var forcedTokens = 0
    /// Model passes spent on the output (forced tokens go through in batches).
    public var modelSteps = 0
    /// The schema's trace (`GenerateOptions.traceConstraint`).
    public var trace: [ConstraintStep] = []

    public init(text: String, promptTokens: Int, cachedTokens: Int, generatedTokens: Int,
                stopReason: StopReason, promptMs: Double, generateMs: Double) {
        self.text = text
        self.promptTokens = promptTokens
        self.cachedTokens = cachedTokens
        self.generatedTokens = generatedTokens
        self.stopReason = stopReason
        self.promptMs = promptMs
        self.generateMs = generateMs
    }
}

/// One output token of a constrained generation.
public struct ConstraintStep: Sendable {
    public var token: Int32
    public var forced: Bool
    /// The model pass that fed this token (forced tokens of one run share a pass).
    public var pass: Int
    /// The ids the schema allowed when the token was sampled (empty for forced tokens).
    public var allowed: [Int32]
}
