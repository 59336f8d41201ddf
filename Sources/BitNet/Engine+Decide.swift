#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GGUF
import Platform

/// Decisions: a prompt and a fixed set of labels, scored as token trees over the cached prefix.
extension Engine {
    /// One decision of a batch.
    public struct DecideRequest: Sendable {
        public var prompt: String
        public var labels: [String]
        public init(prompt: String, labels: [String]) {
            self.prompt = prompt
            self.labels = labels
        }
    }

    /// A decision's token plan: its prompt-side tokens and each label's full token sequence.
    struct DecidePlan {
        var labels: [String]
        var promptCount: Int
        /// prompt + label, per label.
        var full: [[Int32]]
        /// Where each label's scored tokens start.
        var starts: [Int]
        /// Tokens shared by all sequences up to the first scored token.
        var sharedIds: [Int32]
        var shared: Int { sharedIds.count }
        /// Nodes of the tree pass this plan occupies (before deduplication).
        var nodeCount: Int {
            full.reduce(0) { $0 + ($1.count - 1 - shared) } + shared
        }
    }

    func plan(_ r: DecideRequest) throws -> DecidePlan {
        let prompt = r.prompt, labels = r.labels
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
        return DecidePlan(labels: labels, promptCount: promptIds.count, full: full, starts: starts,
                          sharedIds: Array(full[0][..<shared]))
    }

    /// Scores each label as the text that follows the prompt (DESIGN.md §8): the tokenizer sees
    /// prompt + label (with a space between them when the prompt does not end in whitespace and
    /// the label does not start with it, so `Answer:` + `water` is scored as " water"); a label's
    /// score is the sum of its tokens' log-probabilities; the probabilities are the softmax of
    /// the scores over the labels. `cacheKey` (a route name) selects the prefix-cache slot whose
    /// KV state is reused for the part of the prompt that is the same as in that slot's previous
    /// request.
    public func decide(prompt: String, labels: [String], cacheKey: String = "") throws -> DecideResult {
        try decide(batch: [DecideRequest(prompt: prompt, labels: labels)], cacheKey: cacheKey)[0].get()
    }

    /// Decides several requests together (the queued events of one route): one pass over the
    /// weights computes every request's changing tokens and label continuations as a token
    /// tree on top of the shared cached prefix. Every node's values depend only on its own path,
    /// so each result is bit-identical to deciding that request alone; a request that cannot be
    /// decided gets its error without affecting the others.
    public func decide(batch requests: [DecideRequest], cacheKey: String = "") -> [Result<DecideResult, Error>] {
        let t0 = monotonicMilliseconds()
        var results = [Result<DecideResult, Error>?](repeating: nil, count: requests.count)
        var plans: [(Int, DecidePlan)] = []
        for (i, r) in requests.enumerated() {
            do { plans.append((i, try plan(r))) } catch { results[i] = .failure(error) }
        }
        guard !plans.isEmpty else { return results.map { $0! } }

        // Reuse the cached KV of the prefix every request shares with the slot (at least each
        // request's last shared token is recomputed: its logits are needed).
        var base = 0
        if tuning.prefixCache, let snap = prefixes[cacheKey] {
            base = plans.map { min(commonPrefix(snap.tokens, $0.1.sharedIds), $0.1.shared - 1) }.min()!
            if base > 0 { context.restore(snap, count: base) }
            touch(cacheKey)
        }
        if base == 0 { context.reset() }

        // Passes: as many requests as fit the context after the prefix; a request too large
        // for one pass with all its labels is split into its prompt, then one label at a time.
        var pass: [(Int, DecidePlan)] = []
        var passNodes = 0
        var scored: [Int: [Double]] = [:]
        let first = plans[0]
        // Keeps the first request's prompt-side tokens (just computed, contiguous after the
        // prefix) as the route's cached prefix.
        func rememberFirst() {
            guard tuning.prefixCache, scored[first.0] != nil else { return }
            context.keepTreePrefix(first.1.shared)
            remember(cacheKey, first.1.sharedIds)
        }
        func flush() {
            guard !pass.isEmpty else { return }
            context.truncate(to: base)
            do {
                for (i, s) in try runDecidePass(pass, base: base) { scored[i] = s }
                if pass[0].0 == first.0 { rememberFirst() }
            } catch {
                for (i, _) in pass { results[i] = .failure(error) }
            }
            context.truncate(to: base)
            pass = []
            passNodes = 0
        }
        for (i, p) in plans {
            let n = p.nodeCount - base
            if base + passNodes + n > context.contextLength { flush() }
            if base + n > context.contextLength {
                do {
                    scored[i] = try decideSplit(p, base: base)
                    if i == first.0 {
                        context.truncate(to: base)
                        rememberFirst()
                    }
                } catch { results[i] = .failure(error) }
                context.truncate(to: base)
                continue
            }
            pass.append((i, p))
            passNodes += n
        }
        flush()
        if tuning.prefixCache {
            for (i, p) in plans.dropFirst() where scored[i] != nil { remember(cacheKey, p.sharedIds, copy: false) }
        }

        let elapsed = monotonicMilliseconds() - t0
        for (i, p) in plans {
            guard let scores = scored[i] else { continue }
            // A corrupt model (NaN or Inf in a weight the load checks cannot scan, such as the
            // embedding) must not yield a decision: the caller answers `inference_failed`.
            if let bad = scores.firstIndex(where: { !$0.isFinite }) {
                results[i] = .failure(RequestError(
                    "the model produced a non-finite score (\(scores[bad])) for label '\(p.labels[bad])'; the model file is probably corrupt"))
                continue
            }
            let mx = scores.max()!
            let ex = scores.map { exp($0 - mx) }
            let z = ex.reduce(0, +)
            let probs = ex.map { $0 / z }
            let best = probs.indices.max { probs[$0] < probs[$1] }!
            results[i] = .success(DecideResult(labels: p.labels, probabilities: probs, logScores: scores, best: best,
                                               promptTokens: p.promptCount, cachedTokens: base, elapsedMs: elapsed,
                                               batchSize: plans.count))
        }
        return results.map { $0! }
    }

    /// One tree pass for several plans on top of `base` cached positions; returns each plan's
    /// label scores. The first plan's prompt-side tokens are the first nodes (contiguous slots
    /// after the prefix), so `keepTreePrefix` can keep them as the route's prefix afterwards.
    func runDecidePass(_ plans: [(Int, DecidePlan)], base: Int) throws -> [(Int, [Double])] {
        var tree = TokenTree()
        var requests: [(node: Int, NodeLogits)] = []
        // Per plan and label, the terms of its score: (request index, target token, full row?).
        var terms: [[[(Int, Int32, Bool)]]] = []
        var fullAt: [Int: Int] = [:]
        func fullRequest(_ node: Int) -> Int {
            if let r = fullAt[node] { return r }
            requests.append((node, .full))
            fullAt[node] = requests.count - 1
            return requests.count - 1
        }
        for (_, p) in plans {
            var parent = -1
            for t in p.sharedIds[base...] { parent = tree.node(t, parent: parent) }
            let lastShared = parent
            let labelOnly = labelOnlyLogits(p)
            var mine: [[(Int, Int32, Bool)]] = Array(repeating: [], count: p.full.count)
            if labelOnly {
                requests.append((lastShared, .rows(p.full.map { $0[p.shared] })))
                let r = requests.count - 1
                for i in p.full.indices { mine[i].append((r, Int32(i), false)) }
            }
            for (i, f) in p.full.enumerated() {
                let scoredFrom = labelOnly ? max(p.starts[i], p.shared + 1) : p.starts[i]
                mine[i] += continuation(f, from: p.shared, scoredFrom: scoredFrom, below: lastShared,
                                        tree: &tree, request: fullRequest)
            }
            terms.append(mine)
        }
        let out = try context.forward(tree: tree, logits: requests)
        var lse: [Int: Double] = [:]
        return plans.indices.map { k in (plans[k].0, terms[k].map { score($0, out, lse: &lse) }) }
    }

    /// Whether a plan's first scored tokens need only their LM-head rows: every label starts
    /// scoring at the same node, so the common normaliser cancels (and the tuning allows it).
    func labelOnlyLogits(_ p: DecidePlan) -> Bool {
        tuning.labelOnlyLogits && p.starts.allSatisfy { $0 == p.shared }
    }

    /// The tokens f[from...] of one label below `node` (the node whose logits predict f[from]):
    /// adds a node for each but the last and, for every target at or after `scoredFrom`, a term
    /// (full-logits request at the node before it, target token, true).
    func continuation(_ f: [Int32], from: Int, scoredFrom: Int, below node: Int, tree: inout TokenTree,
                              request: (Int) -> Int) -> [(Int, Int32, Bool)] {
        var terms: [(Int, Int32, Bool)] = []
        var node = node
        for target in from..<f.count {
            if target >= scoredFrom { terms.append((request(node), f[target], true)) }
            if target < f.count - 1 { node = tree.node(f[target], parent: node) }
        }
        return terms
    }

    /// A label's score from its terms: log-probabilities (logit − log Σ exp) for full rows, the
    /// logit itself for label-only rows (their normaliser is common to all labels and cancels).
    /// Summed in term order onto `initial`, so a label scored in several passes gets the same bits.
    func score(_ terms: [(Int, Int32, Bool)], _ out: [[Float]], lse: inout [Int: Double],
                       onto initial: Double = 0) -> Double {
        var s = initial
        for (r, v, isFull) in terms {
            if isFull {
                if lse[r] == nil { lse[r] = logSumExp(out[r]) }
                s += Double(out[r][Int(v)]) - lse[r]!
            } else {
                s += Double(out[r][Int(v)])
            }
        }
        return s
    }

    /// A plan too large for one pass with all its labels: its prompt side first, then each label
    /// as its own pass on top of it.
    func decideSplit(_ p: DecidePlan, base: Int) throws -> [Double] {
        context.truncate(to: base)
        let labelOnly = labelOnlyLogits(p)
        var chain = TokenTree()
        var last = -1
        for t in p.sharedIds[base...] { last = chain.node(t, parent: last) }
        let promptOut = [try context.forward(tree: chain, logits: [(last, labelOnly ? .rows(p.full.map { $0[p.shared] }) : .full)])[0]]
        context.keepTreePrefix(p.shared)
        var lse: [Int: Double] = [:]
        var scores: [Double] = []
        for (i, f) in p.full.enumerated() {
            var s = 0.0
            if p.starts[i] == p.shared {
                s = score([(0, labelOnly ? Int32(i) : f[p.shared], !labelOnly)], promptOut, lse: &lse)
            }
            if f.count - 1 > p.shared {
                var tree = TokenTree()
                var requests: [(node: Int, NodeLogits)] = []
                let root = tree.node(f[p.shared], parent: -1)
                let terms = continuation(f, from: p.shared + 1, scoredFrom: p.starts[i], below: root, tree: &tree) { node in
                    requests.append((node, .full))
                    return requests.count - 1
                }
                var labelLSE: [Int: Double] = [:]
                s = score(terms, try context.forward(tree: tree, logits: requests), lse: &labelLSE, onto: s)
            }
            scores.append(s)
        }
        return scores
    }
}
