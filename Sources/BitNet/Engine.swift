#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GGUF

/// Monotonic milliseconds.
public func monotonicMs() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
}

/// The trained chat format (spec §5.3): `System: …<|eot_id|>User: …<|eot_id|>Assistant: `.
public enum ChatFormat {
    public static func render(user: String, system: String? = nil) -> String {
        var s = "<|begin_of_text|>"
        if let system, !system.isEmpty { s += "System: " + trim(system) + "<|eot_id|>" }
        s += "User: " + trim(user) + "<|eot_id|>Assistant: "
        return s
    }

    static func trim(_ s: String) -> String {
        var u = Substring(s)
        while let f = u.first, f.isWhitespace { u.removeFirst() }
        while let l = u.last, l.isWhitespace { u.removeLast() }
        return String(u)
    }
}

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

    public init(modelPath: String, options: EngineOptions) throws {
        let t0 = monotonicMs()
        let model = try BitNetModel(path: modelPath)
        var pre: PreTokenizer? = nil
        if let p = options.preTokenizer {
            guard let m = PreTokenizer(rawValue: p) ?? PreTokenizer(ggmlName: p) else {
                throw RequestError("unknown pre-tokenizer '\(p)' (llama3, default, gpt2)")
            }
            pre = m
        }
        let tokenizer = try Tokenizer(file: model.file, override: pre)
        let kernels = try KernelSet(forced: options.kernel)
        let ctx = options.contextLength > 0 ? options.contextLength : min(model.hp.trainedContext, 4096)
        self.model = model
        self.tokenizer = tokenizer
        self.context = InferenceContext(model: model, kernels: kernels, pool: ThreadPool(threads: options.threads),
                                        contextLength: ctx)
        switch options.lmHead {
        case "file", "": break
        case "q8_0": context.useQ8LMHead(true)
        default: throw RequestError("unknown LM head '\(options.lmHead)' (file, q8_0)")
        }
        self.loadMs = monotonicMs() - t0
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
    private var prefixes: [String: KVSnapshot] = [:]
    private var prefixUse: [String] = []

    /// Bytes held by cached prefixes.
    public var prefixCacheBytes: Int { prefixes.values.reduce(0) { $0 + $1.bytes } }

    /// Forgets every cached prefix (config reload, model change).
    public func invalidatePrefixCache() {
        prefixes = [:]
        prefixUse = []
    }

    /// Scores each label as the text that follows the prompt (DESIGN.md §8): the tokenizer sees
    /// prompt + label (with a space between them when the prompt does not end in whitespace and
    /// the label does not start with it, so `Answer:` + `water` is scored as " water"); a label's score is the sum of its tokens' log-probabilities; the
    /// probabilities are the softmax of the scores over the labels. `cacheKey` (a route name)
    /// selects the prefix-cache slot whose KV state is reused for the part of the prompt that
    /// is the same as in that slot's previous request.
    public func decide(prompt: String, labels: [String], cacheKey: String = "") throws -> DecideResult {
        let t0 = monotonicMs()
        guard !labels.isEmpty else { throw RequestError("decide needs at least one label") }
        let promptIds = tokenizer.encode(prompt)
        // A label is the text that follows the prompt; like a word after "Answer:" it carries
        // its leading space, which is added when neither side has whitespace at the seam.
        let promptEndsWithSpace = prompt.last?.isWhitespace ?? true
        let continuations = labels.map { l -> String in
            promptEndsWithSpace || (l.first?.isWhitespace ?? true) ? l : " " + l
        }
        let full = continuations.map { tokenizer.encode(prompt + $0) }
        // Where each label's own tokens start: after the part shared with the prompt alone.
        var starts: [Int] = []
        for (i, f) in full.enumerated() {
            let c = commonPrefix(f, promptIds)
            guard c < f.count else { throw RequestError("label '\(labels[i])' adds no tokens to the prompt") }
            guard c >= 1 else { throw RequestError("the prompt is empty: nothing to condition the label '\(labels[i])' on") }
            starts.append(c)
        }
        guard let longest = full.map(\.count).max(), longest <= context.contextLength else {
            throw RequestError("prompt and label need more than the context length \(context.contextLength)")
        }
        // Shared prefix of all sequences, but never past the first scored token of any label.
        var shared = full[0].count
        for f in full.dropFirst() { shared = min(shared, commonPrefix(f, full[0])) }
        shared = min(shared, starts.min()!)
        let sharedIds = Array(full[0][..<shared])

        // Reuse the cached KV of the longest common prefix (at least the last shared token is
        // recomputed: its logits are needed).
        var reused = 0
        if tuning.prefixCache, let snap = prefixes[cacheKey] {
            reused = min(commonPrefix(snap.tokens, sharedIds), shared - 1)
            if reused > 0 { context.restore(snap, count: reused) }
            touch(cacheKey)
        }
        if reused == 0 { context.reset() }

        var scores = [Double](repeating: 0, count: labels.count)
        let firstNeeded = full.indices.filter { starts[$0] == shared }
        let labelOnly = tuning.labelOnlyLogits && firstNeeded.count == labels.count
        let rest = Array(sharedIds[reused...])
        if labelOnly {
            let firstTokens = full.map { $0[shared] }
            let vals = try context.forward(rest, logits: .selected([(rest.count - 1, firstTokens)]))
            for i in labels.indices { scores[i] += Double(vals[i]) }
        } else {
            let lastLogits = try context.forward(rest, logits: firstNeeded.isEmpty ? .none : .last)
            let lse0 = firstNeeded.isEmpty ? 0 : logSumExp(lastLogits)
            for i in firstNeeded { scores[i] += Double(lastLogits[Int(full[i][shared])]) - lse0 }
        }
        if tuning.prefixCache { remember(cacheKey, sharedIds) }

        // Each label's remaining tokens, on top of the shared prefix.
        let V = model.hp.vocabSize
        for (i, f) in full.enumerated() {
            let feed = Array(f[shared..<(f.count - 1)])
            if feed.isEmpty { continue }
            context.truncate(to: shared)
            let logits = try context.forward(feed, logits: .all)
            for k in 0..<feed.count {
                let target = shared + k + 1
                if target < starts[i] { continue }
                let row = Array(logits[(k * V)..<((k + 1) * V)])
                scores[i] += Double(row[Int(f[target])]) - logSumExp(row)
            }
        }
        let mx = scores.max()!
        let ex = scores.map { exp($0 - mx) }
        let z = ex.reduce(0, +)
        let probs = ex.map { $0 / z }
        let best = probs.indices.max { probs[$0] < probs[$1] }!
        return DecideResult(labels: labels, probabilities: probs, logScores: scores, best: best,
                            promptTokens: promptIds.count, cachedTokens: reused, elapsedMs: monotonicMs() - t0)
    }

    /// `decide` with the default prefix-cache slot.
    public func decide(prompt: String, labels: [String]) throws -> DecideResult {
        try decide(prompt: prompt, labels: labels, cacheKey: "")
    }

    /// Keeps the KV of `tokens` (positions 0..<count, now in the context) under `key`: if the
    /// slot already holds a prefix, it shrinks to the part both requests share, which is the
    /// route's constant prompt prefix, and no copy is made.
    private func remember(_ key: String, _ tokens: [Int32]) {
        if let snap = prefixes[key] {
            let c = commonPrefix(snap.tokens, tokens)
            if c >= max(1, snap.count / 2) || c >= 16 {
                snap.shrink(to: c)
                return
            }
        }
        guard context.position >= tokens.count, !tokens.isEmpty else { return }
        let snap = context.snapshot(tokens: tokens)
        prefixes[key] = snap
        touch(key)
        while prefixCacheBytes > prefixCacheBudget, let oldest = prefixUse.first {
            prefixUse.removeFirst()
            prefixes[oldest] = nil
        }
    }

    private func touch(_ key: String) {
        prefixUse.removeAll { $0 == key }
        prefixUse.append(key)
    }

    // MARK: generate

    public func generate(prompt: String, options: GenerateOptions, onText: (String) -> Bool) throws -> GenerateResult {
        let text = options.chat ? ChatFormat.render(user: prompt, system: options.system) : prompt
        let ids = tokenizer.encode(text)
        guard !ids.isEmpty else { throw RequestError("the prompt is empty") }
        guard ids.count < context.contextLength else {
            throw RequestError("prompt of \(ids.count) tokens does not fit the context length \(context.contextLength)")
        }
        let t0 = monotonicMs()
        context.reset()
        var logits = try context.forward(ids, logits: .last)
        // Generation overwrote the KV cache the prefix snapshots were taken from; snapshots are
        // copies, so they stay valid.
        let t1 = monotonicMs()
        var sampler = Sampler(options: options)
        var history = ids
        var stream = TextStream(tokenizer: tokenizer)
        var produced = ""
        var generated = 0
        var reason = StopReason.maxTokens
        loop: while generated < options.maxTokens {
            let next = sampler.sample(logits, history: history)
            generated += 1
            if options.stopAtEOG && tokenizer.endOfGeneration.contains(next) {
                reason = .endOfGeneration
                break
            }
            history.append(next)
            let piece = stream.push(next)
            if !piece.isEmpty {
                produced += piece
                if let stop = options.stop.first(where: { produced.findRange(of: $0) != nil }),
                   let r = produced.findRange(of: stop) {
                    let keep = String(produced[..<r.lowerBound])
                    let already = produced.count - piece.count
                    if keep.count > already { _ = onText(String(keep.dropFirst(already))) }
                    produced = keep
                    reason = .stopString
                    break loop
                }
                if !onText(piece) {
                    reason = .cancelled
                    break
                }
            }
            if generated >= options.maxTokens { break }
            if context.position >= context.contextLength {
                reason = .contextFull
                break
            }
            logits = try context.forward([next], logits: .last)
        }
        let rest = stream.flush()
        if !rest.isEmpty && reason != .stopString {
            produced += rest
            _ = onText(rest)
        }
        return GenerateResult(text: produced, promptTokens: ids.count, cachedTokens: 0, generatedTokens: generated,
                              stopReason: reason, promptMs: t1 - t0, generateMs: monotonicMs() - t1)
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

extension String {
    /// First occurrence of `needle` (stdlib-only substring search).
    func findRange(of needle: String) -> Range<String.Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
