import BitNet
import BitNetTools
import GGUF
import Testing
import TestKit

/// Writes a small generated model and returns its path (in a temp dir the caller removes).
func makeModel(_ dir: TempDir, _ name: String = "m.gguf", configure: (inout ModelSpec) -> Void = { _ in }) throws -> String {
    var spec = ModelSpec()
    spec.layers = 3
    spec.embedding = 128
    spec.heads = 4
    spec.kvHeads = 2
    spec.feedForward = 256
    spec.vocab = 512
    configure(&spec)
    let path = dir.file(name)
    try ModelFactory.write(spec, to: path)
    return path
}

@Suite struct EngineTests {
    @Test func loadsTheOfficialLayout() throws {
        let dir = TempDir("engine")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let m = try BitNetModel(path: path)
        #expect(m.hp.architecture == "bitnet-b1.58")
        #expect(m.hp.activation == .relu2)
        #expect(m.tiedOutput)
        #expect(m.file.metadata["tokenizer.ggml.pre"] == nil)
        #expect(m.layers.count == 3)
        #expect(abs(m.layers[0].q.alpha - 1 / Float(128).squareRoot()) < 1e-7)
        let tok = try Tokenizer(file: m.file)
        #expect(tok.preTokenizer == .llama3)
        #expect(tok.endOfGeneration.contains(tok.eos!))
    }

    @Test func threadCountDoesNotChangeLogits() throws {
        let dir = TempDir("engine")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let ids: [Int32] = [496, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
        var results: [[Float]] = []
        for t in [1, 2, 3] {
            let e = try Engine(modelPath: path, options: EngineOptions(threads: t))
            e.context.reset()
            var l = try e.context.forward(Array(ids[..<8]), logits: .all)
            for id in ids[8...] { l += try e.context.forward([id], logits: .all) }
            results.append(l)
        }
        #expect(results[0] == results[1])
        #expect(results[0] == results[2])
    }

    @Test func everyKernelPathGivesTheSameLogits() throws {
        let dir = TempDir("engine")
        defer { dir.remove() }
        for type in [GGMLType.i2_s, .tq2_0, .tq1_0] {
            let path = try makeModel(dir, "\(type.name).gguf") { $0.ternaryType = type; $0.embedding = 256; $0.feedForward = 512 }
            let ids: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
            var reference: [Float]?
            for k in KernelSet.availablePaths {
                let e = try Engine(modelPath: path, options: EngineOptions(threads: 2, kernel: KernelPath(rawValue: k)!))
                let l = try e.context.forward(ids, logits: .all)
                if let r = reference {
                    let maxRef = r.map(abs).max()!
                    let diff = zip(l, r).map { abs($0 - $1) }.max()!
                    // Integer parts are exact; only the f16 dot order of the LM head/attention differs.
                    #expect(diff <= 1e-4 * maxRef, "\(type.name) path \(k): max |Δ| \(diff)")
                } else {
                    reference = l
                }
            }
        }
    }

    @Test func decideMatchesFullLogits() throws {
        let dir = TempDir("engine")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let e = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let prompt = "The soil is dry. Answer:"
        let labels = [" water", " heat", " nothing at all"]
        let r = try e.decide(prompt: prompt, labels: labels)
        #expect(abs(r.probabilities.reduce(0, +) - 1) < 1e-9)
        // Recompute each label's log-probability from full logits of prompt + label.
        let promptIds = e.tokenizer.encode(prompt)
        var scores: [Double] = []
        for l in labels {
            let ids = e.tokenizer.encode(prompt + l)
            var c = 0
            while c < ids.count && c < promptIds.count && ids[c] == promptIds[c] { c += 1 }
            e.context.reset()
            let logits = try e.context.forward(ids, logits: .all)
            let V = e.model.hp.vocabSize
            var s = 0.0
            for k in c..<ids.count {
                let row = logits[((k - 1) * V)..<(k * V)]
                let mx = row.max()!
                let lse = Double(mx) + row.map { Double($0 - mx) }.map { _exp($0) }.reduce(0, +).logValue
                s += Double(row[row.startIndex + Int(ids[k])]) - lse
            }
            scores.append(s)
        }
        // Scores may differ by a constant common to all labels (label-only logits).
        for i in labels.indices {
            let want = scores[i] - scores[0], got = r.logScores[i] - r.logScores[0]
            #expect(abs(want - got) < 2e-3 * max(1, abs(want)), "label \(labels[i])")
        }
    }

    @Test func corruptModelContentIsAClearError() throws {
        let dir = TempDir("engine")
        defer { dir.remove() }
        var w = try ModelFactory.makeWriter(ModelSpec())
        w.set("bitnet-b1.58.attention.head_count", .uint32(3))
        let path = dir.file("bad.gguf")
        try w.write(to: path)
        #expect(throws: ModelError.self) { try BitNetModel(path: path) }
        do {
            _ = try BitNetModel(path: path)
        } catch {
            #expect("\(error)".contains("head_count"))
            let offset = try #require(try GGUFFile(path: path).keyOffsets["bitnet-b1.58.attention.head_count"])
            #expect("\(error)".contains("byte \(offset) (bitnet-b1.58.attention.head_count)"), "\(error)")
        }
    }

    @Test func generateIsDeterministicWithASeed() throws {
        let dir = TempDir("engine")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let e = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        var o = GenerateOptions()
        o.maxTokens = 12
        o.seed = 7
        o.stopAtEOG = false
        let a = try e.generate(prompt: "Hello", options: o) { _ in true }
        let b = try e.generate(prompt: "Hello", options: o) { _ in true }
        #expect(a.text == b.text)
        #expect(a.generatedTokens == 12)
        o.temperature = 0
        let g1 = try e.generate(prompt: "Hello", options: o) { _ in true }
        o.seed = 99
        let g2 = try e.generate(prompt: "Hello", options: o) { _ in true }
        #expect(g1.text == g2.text)
    }
}

private func _exp(_ x: Double) -> Double { x.isFinite ? Double.exp(x) : 0 }
private extension Double {
    static func exp(_ x: Double) -> Double {
        // e^x via the standard library's pow-free series is not available; use Glibc.
        return _glibcExp(x)
    }
    var logValue: Double { _glibcLog(self) }
}

@Suite struct DecideFastPathTests {
    static let prefix = "Greenhouse controller. Decide what to do with the readings. Reply with one word: water, ventilate, heat or nothing.\nReadings:"

    @Test func prefixCacheAndLabelOnlyLogitsGiveTheSameProbabilities() throws {
        let dir = TempDir("decide")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let fast = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let slow = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        slow.tuning.prefixCache = false
        slow.tuning.labelOnlyLogits = false
        let labels = [" water", " ventilate", " heat", " nothing"]
        var cachedSeen = 0
        for (i, t) in [31.5, 18.0, 25.2, 9.9, 40.1].enumerated() {
            let prompt = Self.prefix + " temperature \(t) C, soil \(10 + i * 7) %. Action:"
            let a = try fast.decide(prompt: prompt, labels: labels, cacheKey: "greenhouse")
            let b = try slow.decide(prompt: prompt, labels: labels, cacheKey: "greenhouse")
            #expect(b.cachedTokens == 0)
            if i > 0 { #expect(a.cachedTokens > 20, "request \(i) reused \(a.cachedTokens) tokens") }
            cachedSeen += a.cachedTokens
            for k in labels.indices {
                #expect(abs(a.probabilities[k] - b.probabilities[k]) < 1e-3, "request \(i) label \(labels[k])")
            }
            #expect(a.best == b.best || abs(a.probabilities[a.best] - b.probabilities[a.best]) < 1e-3)
        }
        #expect(cachedSeen > 0)
        #expect(fast.prefixCacheBytes > 0)
        fast.invalidatePrefixCache()
        #expect(fast.prefixCacheBytes == 0)
    }

    @Test func labelsGetTheirLeadingSpace() throws {
        let dir = TempDir("decide")
        defer { dir.remove() }
        let e = try Engine(modelPath: try makeModel(dir), options: EngineOptions(threads: 1))
        let a = try e.decide(prompt: "The soil is dry. Answer:", labels: ["water", "heat", "nothing"])
        let b = try e.decide(prompt: "The soil is dry. Answer:", labels: [" water", " heat", " nothing"])
        let c = try e.decide(prompt: "The soil is dry. Answer: ", labels: ["water", "heat", "nothing"])
        for k in 0..<3 {
            #expect(abs(a.probabilities[k] - b.probabilities[k]) < 1e-9)
            #expect(abs(a.probabilities[k] - c.probabilities[k]) < 1e-3)
        }
    }

    @Test func multiTokenLabelsUseTheFullNormaliser() throws {
        let dir = TempDir("decide")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let fast = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let slow = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        slow.tuning.prefixCache = false
        slow.tuning.labelOnlyLogits = false
        let labels = [" open the vents", " water the plants now", " nothing"]
        let p = Self.prefix + " temperature 33 C. Action:"
        let a = try fast.decide(prompt: p, labels: labels)
        let b = try slow.decide(prompt: p, labels: labels)
        for k in labels.indices { #expect(abs(a.probabilities[k] - b.probabilities[k]) < 1e-6) }
    }
}

@Suite struct DecideBatchTests {
    static let labels = [" water", " ventilate", " heat the house", " nothing at all"]

    static func prompts() -> [String] {
        [31.5, 18.0, 25.2, 9.9, 40.1, 12.0].enumerated().map { i, t in
            DecideFastPathTests.prefix + " temperature \(t) C, soil \(10 + i * 7) %. Action:"
        }
    }

    @Test func aTreePassGivesEachPathItsSequentialValues() throws {
        let dir = TempDir("tree")
        defer { dir.remove() }
        let e = try Engine(modelPath: try makeModel(dir), options: EngineOptions(threads: 2))
        let prefix: [Int32] = [496, 10, 20, 30, 40]
        let a: [Int32] = [50, 60, 70], b: [Int32] = [50, 61], c: [Int32] = [80, 90, 100, 110]
        // Sequential reference: prefix, then each path in its own multi-token call (logits of
        // the last token only: the LM head of a one-row call, like the tree's).
        func sequential(_ path: [Int32]) throws -> [Float] {
            e.context.reset()
            _ = try e.context.forward(prefix, logits: .none)
            return try e.context.forward(path, logits: .last)
        }
        let want = [try sequential(a), try sequential(b), try sequential(c)]
        e.context.reset()
        _ = try e.context.forward(prefix, logits: .none)
        var tree = TokenTree()
        var ends: [Int] = []
        for path in [a, b, c] {
            var parent = -1
            for t in path { parent = tree.node(t, parent: parent) }
            ends.append(parent)
        }
        #expect(tree.count == 3 + 1 + 4, "the shared first token of a and b is one node")
        let got = try e.context.forward(tree: tree, logits: ends.map { ($0, NodeLogits.full) })
        #expect(e.context.position == prefix.count, "tree slots are scratch")
        for k in 0..<3 {
            let differing = zip(got[k], want[k]).filter { $0 != $1 }.count
            #expect(got[k].count == want[k].count && differing == 0, "path \(k): \(differing) logits differ")
        }
        // Selected rows are the same values as the full row.
        let rows = try e.context.forward(tree: tree, logits: [(ends[2], .rows([3, 7, 300]))])[0]
        #expect(rows == [want[2][3], want[2][7], want[2][300]])
    }

    @Test func batchedDecisionsAreBitIdenticalToSingleOnes() throws {
        let dir = TempDir("batch")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let single = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let batched = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let cold = try Engine(modelPath: path, options: EngineOptions(threads: 1))
        cold.tuning.prefixCache = false
        let prompts = Self.prompts()
        // Warm both prefix caches with the same first request.
        _ = try single.decide(prompt: prompts[0], labels: Self.labels, cacheKey: "r")
        _ = try batched.decide(prompt: prompts[0], labels: Self.labels, cacheKey: "r")
        let one = try prompts.map { try single.decide(prompt: $0, labels: Self.labels, cacheKey: "r") }
        var reqs = prompts.map { Engine.DecideRequest(prompt: $0, labels: Self.labels) }
        reqs.insert(Engine.DecideRequest(prompt: prompts[1], labels: []), at: 2)
        let many = batched.decide(batch: reqs, cacheKey: "r")
        #expect(many.count == reqs.count)
        #expect(throws: RequestError.self) { try many[2].get() }
        let ok = many.enumerated().filter { $0.offset != 2 }.map { $0.element }
        for (k, r) in ok.enumerated() {
            let b = try r.get()
            #expect(b.batchSize == prompts.count)
            #expect(b.cachedTokens > 20)
            #expect(b.logScores == one[k].logScores, "request \(k)")
            #expect(b.probabilities == one[k].probabilities, "request \(k)")
            // Without any cache: the same numbers again.
            let c = try cold.decide(prompt: prompts[k], labels: Self.labels)
            #expect(c.cachedTokens == 0)
            #expect(c.probabilities == one[k].probabilities, "request \(k) without prefix cache")
        }
        // The route's prefix stays cached after a batch.
        let again = try batched.decide(prompt: prompts[3], labels: Self.labels, cacheKey: "r")
        #expect(again.cachedTokens > 20)
        #expect(again.probabilities == one[3].probabilities)
    }

    @Test func aDecisionLargerThanOnePassIsSplitWithTheSameResult() throws {
        let dir = TempDir("split")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let roomy = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let prompt = Self.prompts()[2]
        // Room for the prompt and the longest label, not for all label continuations at once.
        let longest = Self.labels.map { roomy.tokenizer.encode(prompt + $0).count }.max()!
        let tight = try Engine(modelPath: path, options: EngineOptions(threads: 2, contextLength: longest))
        let n = roomy.tokenizer.encode(prompt).count
        let labelTokens = Self.labels.map { roomy.tokenizer.encode(prompt + $0).count - n }
        #expect(n + labelTokens.reduce(0, +) - labelTokens.count > longest, "all labels at once must not fit")
        let a = try roomy.decide(prompt: prompt, labels: Self.labels)
        let b = try tight.decide(prompt: prompt, labels: Self.labels)
        #expect(a.probabilities == b.probabilities)
        let batch = tight.decide(batch: Self.prompts().map { .init(prompt: $0, labels: Self.labels) })
        for (k, r) in batch.enumerated() {
            let s = try roomy.decide(prompt: Self.prompts()[k], labels: Self.labels)
            #expect(try r.get().probabilities == s.probabilities, "request \(k)")
        }
    }
}

@Suite struct LMHeadCopyTests {
    @Test func q8LMHeadStaysCloseToTheFileHead() throws {
        let dir = TempDir("lmhead")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let exact = try Engine(modelPath: path, options: EngineOptions(threads: 2))
        let approx = try Engine(modelPath: path, options: EngineOptions(threads: 2, lmHead: .q8_0))
        #expect(approx.context.lmHeadType == .q8_0)
        let ids: [Int32] = (0..<24).map { Int32($0 * 13 % 480) }
        let a = try exact.context.forward(ids, logits: .all)
        let b = try approx.context.forward(ids, logits: .all)
        let maxAbs = a.map(abs).max()!
        let diff = zip(a, b).map { abs($0 - $1) }.max()!
        #expect(diff > 0, "the copy must really be used")
        #expect(diff < 0.02 * maxAbs, "max |Δ| \(diff) vs max |logit| \(maxAbs)")
        // An unknown head is refused where its name is read (typed options: the CLI and the
        // config parse it), so the engine cannot be asked for one.
        #expect(LMHead(rawValue: "q4") == nil)
    }
}

/// Hardening: NaN/Inf in a model never turns into a decision.
@Suite struct NonFiniteModelTests {
    @Test func aNonFiniteNormIsRefusedAtLoadWithItsOffset() throws {
        let dir = TempDir("nan")
        defer { dir.remove() }
        for (name, value) in [("blk.1.ffn_sub_norm.weight", Float.nan), ("output_norm.weight", Float.infinity)] {
            let path = try makeModel(dir)
            let f = try GGUFFile(path: path)
            let t = try #require(f.tensor(named: name))
            let at = f.dataStart + t.offset + 4 * 7
            var bytes = readBytes(path)
            store(value.bitPattern, at: at, in: &bytes)
            writeBytes(bytes, to: path)
            do {
                _ = try BitNetModel(path: path)
                Issue.record("\(name) with \(value) loaded")
            } catch {
                let text = "\(error)"
                #expect(text.contains("byte \(at) (\(name))"), "\(text)")
                #expect(text.contains("non-finite"), "\(text)")
            }
        }
    }

    @Test func aNaNEmbeddingFailsTheRequestInsteadOfDeciding() throws {
        let dir = TempDir("nan")
        defer { dir.remove() }
        let path = try makeModel(dir)
        let f = try GGUFFile(path: path)
        let t = try #require(f.tensor(named: "token_embd.weight"))
        #expect(t.type == .f16)
        var bytes = readBytes(path)
        for i in 0..<t.elementCount { store(UInt16(0x7E00), at: f.dataStart + t.offset + 2 * i, in: &bytes) }  // F16 NaN
        writeBytes(bytes, to: path)
        let engine = try Engine(modelPath: path, options: EngineOptions(threads: 1, contextLength: 128))
        for attempt in 0..<2 {
            do {
                if attempt == 0 {
                    _ = try engine.decide(prompt: "a b c", labels: ["yes", "no"])
                } else {
                    _ = try engine.generate(prompt: "a b c", options: GenerateOptions()) { _ in true }
                }
                Issue.record("attempt \(attempt): a NaN model produced a result")
            } catch {
                #expect(error is RequestError)
                #expect("\(error)".contains("non-finite"), "\(error)")
            }
        }
    }
}
