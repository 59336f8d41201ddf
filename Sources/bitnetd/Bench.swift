import ArgumentParser
import BitNet
import BitNetTools
import GGUF
import JSONValue
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Resident memory split as the kernel reports it (/proc/self/status), bytes.
struct MemoryUsage {
    var peak = 0, file = 0, anon = 0

    static func current() -> MemoryUsage {
        var m = MemoryUsage()
        guard let f = fopen("/proc/self/status", "r") else { return m }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            func kb(_ key: String) -> Int? {
                guard s.hasPrefix(key) else { return nil }
                return Int(s.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first ?? "").map { $0 * 1024 }
            }
            if let v = kb("VmHWM:") { m.peak = v }
            if let v = kb("RssFile:") { m.file = v }
            if let v = kb("RssAnon:") { m.anon = v }
        }
        return m
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing and generation speed (tokens/s), like llama-bench.",
        discussion: """
        pp: N prompt tokens from an empty context in one batch, logits for the last position only. \
        tg: N tokens generated one at a time through the file's own LM head (end-of-generation ignored). \
        Use --make-2b4t to create a random model with the exact BitNet b1.58 2B4T shapes first.
        """)

    @Option(help: "GGUF model to benchmark.")
    var model: String?

    @Flag(name: .customLong("make-2b4t"), help: "Create (if missing) and use a random model with the 2B4T shapes at --model or /tmp/bitnetd-bench/2b4t-i2_s.gguf.")
    var make2B4T = false

    @Option(help: "Comma-separated thread counts.")
    var threads = "0"

    @Option(help: "Prompt tokens (0 = skip pp).")
    var prompt = 128

    @Option(help: "Generated tokens (0 = skip tg).")
    var gen = 128

    @Option(help: "Repetitions of each test.")
    var repetitions = 3

    @Flag(help: "Print JSON.")
    var json = false

    /// `--json`: one document (docs/bench.md, `"schema": 1`) so a board's figures can be pasted.
    static func jsonDocument(kind: String, rows: [String]) -> String {
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return "{\"schema\":1,\"bitnetd\":\(jsonString(Bitnetd.configuration.version)),\"kind\":\"\(kind)\",\"machine\":\(jsonString(machine)),\"cpu_features\":\(jsonString(KernelSet.cpuFeatures)),\"cpus\":\(cpus),\"results\":[\(rows.joined(separator: ","))]}"
    }

    @Option(help: "LM head for tg: file (exact) or q8_0 (Q8_0 copy built at load).")
    var lmHead: LMHead = .file

    @Option(help: "Instead of speed: compare the Q8_0 LM head with the file's own over N positions (max |Δlogit|, top-1 agreement).")
    var lmHeadEval: Int?

    @Flag(help: "Benchmark decisions instead: latency p50/p95/p99 and decisions/s, with and without each fast path.")
    var decide = false

    @Option(help: "--decide: prompt tokens in total.")
    var decidePrompt = 64

    @Option(help: "--decide: of which constant (the route's fixed instructions).")
    var decideConstant = 48

    @Option(help: "--decide: number of labels.")
    var labels = 3

    @Option(help: "--decide: decisions per variant.")
    var decisions = 30

    @Option(help: "--decide: also decide this many readings together (the daemon's queue.batch_max); 0 = skip.")
    var decideBatch = 4

    @Option(help: "--decide: measure end to end over MQTT instead: start `bitnetd run` on the model against the broker at HOST[:PORT] and time request → decision, one at a time and in a burst.")
    var mqtt: String?

    func run() throws {
        var path = model ?? ""
        if make2B4T {
            if path.isEmpty {
                mkdir("/tmp/bitnetd-bench", 0o755)
                path = "/tmp/bitnetd-bench/2b4t-i2_s.gguf"
            }
            if access(path, R_OK) != 0 {
                eprint("writing a random model with the 2B4T shapes to \(path) (1.19 GB)…")
                let t0 = monotonicMilliseconds()
                try ModelFactory.write(.bitnet2B4T, to: path) { done, total in
                    if done % 30 == 0 || done == total { eprint("  \(done)/\(total) tensors") }
                }
                eprint("  done in \(fmt((monotonicMilliseconds() - t0) / 1000)) s")
            }
        }
        guard !path.isEmpty else { throw ValidationError("give --model PATH or --make-2b4t") }
        let threadList = threads.split(separator: ",").compactMap { Int($0) }
        guard !threadList.isEmpty else { throw ValidationError("--threads must be a comma-separated list of integers") }

        if decide {
            try runDecide(path: path, threadList: threadList)
            return
        }
        if let n = lmHeadEval {
            try runLMHeadEval(path: path, positions: n, threads: threadList[0])
            return
        }
        var rows: [String] = []
        var jsonRows: [String] = []
        for t in threadList {
            let engine: Engine
            do {
                engine = try Engine(modelPath: path, options: EngineOptions(threads: t, contextLength: prompt + gen + 8,
                                                                           kernel: KernelPath.fromEnvironment(), lmHead: lmHead))
            } catch {
                throw fail(error)
            }
            let hp = engine.model.hp
            let ctx = engine.context
            var rng = SplitMixXoshiro(seed: 42)
            let vocabBase = Int32(max(1, hp.vocabSize - 256))
            let ids = (0..<max(prompt, 1)).map { _ in Int32(rng.next() % UInt64(vocabBase)) }
            var ppRates: [Double] = []
            var tgRates: [Double] = []
            for _ in 0..<repetitions {
                if prompt > 0 {
                    ctx.reset()
                    let t0 = monotonicMilliseconds()
                    _ = try ctx.forward(Array(ids[..<prompt]), logits: .last)
                    ppRates.append(Double(prompt) / (monotonicMilliseconds() - t0) * 1000)
                }
                if gen > 0 {
                    ctx.reset()
                    var logits = try ctx.forward([ids[0]], logits: .last)
                    let t0 = monotonicMilliseconds()
                    for _ in 0..<gen {
                        let next = Sampler.argmax(logits)
                        logits = try ctx.forward([next], logits: .last)
                    }
                    tgRates.append(Double(gen) / (monotonicMilliseconds() - t0) * 1000)
                }
            }
            let bw = readBandwidth(engine)
            let mem = MemoryUsage.current()
            // Every tensor is read once per generated token (the tied embedding as the LM head);
            // with a head copy, the copy is read instead of the file's head.
            let head = engine.model.output
            let fileHeadBytes = head.rows * head.type.rowBytes(head.columns)
            let copyBytes = engine.context.lmHeadCopyBytes
            let bytesPerToken = Double(engine.model.file.fileSize - (copyBytes > 0 ? fileHeadBytes : 0) + copyBytes)
            let kernel = engine.kernelName
            func stats(_ r: [Double]) -> (Double, Double, Double) {
                let s = r.sorted()
                return (s.first ?? 0, s.isEmpty ? 0 : s[s.count / 2], s.last ?? 0)
            }
            let pp = stats(ppRates), tg = stats(tgRates)
            let ceiling = bw / bytesPerToken
            if prompt > 0 {
                rows.append("| \(engine.modelName) | \(fmt(Double(engine.modelFileBytes) / 1e9, 2)) GB | \(kernel) | \(engine.threads) | pp\(prompt) | \(fmt(pp.0)) – \(fmt(pp.1)) – \(fmt(pp.2)) |")
            }
            if gen > 0 {
                rows.append("| \(engine.modelName) | \(fmt(Double(engine.modelFileBytes) / 1e9, 2)) GB | \(kernel) | \(engine.threads) | tg\(gen) | \(fmt(tg.0)) – \(fmt(tg.1)) – \(fmt(tg.2)) |")
            }
            rows.append("|   read bandwidth \(fmt(bw / 1e9, 1)) GB/s → tg ceiling \(fmt(ceiling)) t/s (tg median = \(fmt(tg.1 / max(ceiling, 1e-9) * 100)) %); RSS peak \(mem.peak >> 20) MiB (file \(mem.file >> 20) MiB, anon \(mem.anon >> 20) MiB) |")
            jsonRows.append("{\"model\":\(jsonString(engine.modelName)),\"model_bytes\":\(engine.modelFileBytes),\"kernel\":\"\(kernel)\",\"threads\":\(engine.threads),\"pp_tokens\":\(prompt),\"pp_tps\":[\(ppRates.map { jsonNumber($0) }.joined(separator: ","))],\"tg_tokens\":\(gen),\"tg_tps\":[\(tgRates.map { jsonNumber($0) }.joined(separator: ","))],\"read_bandwidth_gbs\":\(jsonNumber(bw / 1e9)),\"tg_ceiling_tps\":\(jsonNumber(ceiling)),\"rss_peak_bytes\":\(mem.peak),\"rss_file_bytes\":\(mem.file),\"rss_anon_bytes\":\(mem.anon),\"load_ms\":\(jsonNumber(engine.loadMs))}")
        }
        if json {
            print(Self.jsonDocument(kind: "tokens", rows: jsonRows))
        } else {
            print("| model | size | kernel | threads | test | t/s (min – median – max) |")
            print("|---|---|---|---|---|---|")
            for r in rows { print(r) }
        }
    }

    /// Logits with the file's LM head and with the Q8_0 copy over the same positions.
    func runLMHeadEval(path: String, positions: Int, threads: Int) throws {
        let engine: Engine
        do { engine = try Engine(modelPath: path, options: EngineOptions(threads: threads, contextLength: positions + 1,
                                                                             kernel: KernelPath.fromEnvironment())) } catch { throw fail(error) }
        let ctx = engine.context
        let V = engine.model.hp.vocabSize
        var rng = SplitMixXoshiro(seed: 5)
        let vocabBase = UInt64(max(1, V - 256))
        let ids = (0..<positions).map { _ in Int32(rng.next() % vocabBase) }
        var maxDiff: Float = 0, maxAbs: Float = 0, agree = 0
        var done = 0
        let chunk = 32
        ctx.reset()
        while done < positions {
            let part = Array(ids[done..<min(positions, done + chunk)])
            let start = ctx.position
            ctx.useQ8LMHead(false)
            let exact = try ctx.forward(part, logits: .all)
            // Same positions again through the Q8_0 head (KV recomputed identically).
            ctx.truncate(to: start)
            let bytes = ctx.useQ8LMHead(true)
            let approx = try ctx.forward(part, logits: .all)
            for t in 0..<part.count {
                let a = exact[(t * V)..<((t + 1) * V)], b = approx[(t * V)..<((t + 1) * V)]
                var am = a.startIndex, bm = b.startIndex
                for i in a.indices {
                    if a[i] > a[am] { am = i }
                    if b[i] > b[bm] { bm = i }
                    maxDiff = max(maxDiff, abs(a[i] - b[i]))
                    maxAbs = max(maxAbs, abs(a[i]))
                }
                if am - a.startIndex == bm - b.startIndex { agree += 1 }
            }
            done += part.count
            if done == part.count { eprint("Q8_0 LM head copy: \(bytes >> 20) MiB") }
        }
        print("LM head Q8_0 vs \(engine.model.output.type.name) over \(positions) positions: max |Δlogit| \(maxDiff) (max |logit| \(maxAbs), relative \(maxDiff / max(maxAbs, 1e-9))); top-1 agreement \(agree)/\(positions) (\(fmt(Double(agree) / Double(positions) * 100, 2)) %)")
    }

    func runDecide(path: String, threadList: [Int]) throws {
        guard decideConstant < decidePrompt, labels >= 1 else {
            throw ValidationError("--decide-constant must be below --decide-prompt, --labels ≥ 1")
        }
        var out: [String] = []
        var jsonRows: [String] = []
        for t in threadList {
            let engine: Engine
            do { engine = try Engine(modelPath: path, options: EngineOptions(threads: t, contextLength: decidePrompt + 64,
                                                                                 kernel: KernelPath.fromEnvironment())) } catch { throw fail(error) }
            let tok = engine.tokenizer
            // A constant instruction text of `decideConstant` tokens and a changing reading.
            let words = ["the", "sensor", "reads", "value", "decide", "action", "greenhouse", "temperature",
                         "humidity", "soil", "light", "answer", "with", "one", "word", "machine", "motor"]
            var constant = "Instructions:"
            var i = 0
            while tok.encode(constant).count < decideConstant {
                constant += " " + words[i % words.count]
                i += 1
            }
            var rng = SplitMixXoshiro(seed: 7)
            // The reading fills the prompt up to --decide-prompt tokens, " Answer:" included.
            let answer = " Answer:"
            func reading() -> String {
                var r = ""
                while true {
                    let next = r + " \(rng.next() % 1000)"
                    if tok.encode(constant + next + answer).count > decidePrompt { break }
                    r = next
                }
                return r + answer
            }
            // Labels that are one token after the prompt in this model's vocabulary where possible
            // (as sensor actions usually are), else the shortest ones; their token counts are shown.
            let candidates = [" water", " heat", " stop", " open", " normal", " nothing", " inspect", " ventilate",
                              " on", " off", " yes", " no", " ok", " alert", " high", " low", " cool", " dry"]
            let probe = constant + " 1 2 3 Answer:"
            let base = tok.encode(probe).count
            let ranked = candidates.map { ($0, tok.encode(probe + $0).count - base) }
                .enumerated().sorted { ($0.element.1, $0.offset) < ($1.element.1, $1.offset) }.map(\.element)
            let chosen = Array(ranked.prefix(labels))
            let labelList = chosen.map(\.0)
            eprint("labels: " + chosen.map { "\($0.0.dropFirst()) (\($0.1) token\($0.1 == 1 ? "" : "s"))" }.joined(separator: ", "))
            if let mqtt {
                let prompts = (0..<(decisions + 3)).map { _ in constant + reading() }
                try runDecideMQTT(path: path, threads: engine.threads, broker: mqtt, prompts: prompts,
                                  labels: labelList, kernel: engine.kernelName, into: &out, json: &jsonRows)
                continue
            }
            let variants: [(String, Bool, Bool)] = [("full recompute, full LM head", false, false),
                                                    ("label-only LM head", false, true),
                                                    ("prefix cache", true, false),
                                                    ("prefix cache + label-only", true, true)]
            let rssBefore = MemoryUsage.current()
            func row(_ name: String, _ lat: [Double], perS: Double, promptTokens: Int, cached: Int) {
                let lat = lat.sorted()
                func pct(_ p: Double) -> Double { percentile(lat, p) }
                out.append("| \(engine.kernelName) | \(engine.threads) | \(name) | \(promptTokens) (\(cached) cached) | \(fmt(pct(0.5), 2)) | \(fmt(pct(0.95), 2)) | \(fmt(pct(0.99), 2)) | \(fmt(perS, 2)) |")
                jsonRows.append("{\"threads\":\(engine.threads),\"kernel\":\"\(engine.kernelName)\",\"variant\":\(jsonString(name)),\"prompt_tokens\":\(promptTokens),\"cached_tokens\":\(cached),\"labels\":\(labels),\"p50_ms\":\(pct(0.5)),\"p95_ms\":\(pct(0.95)),\"p99_ms\":\(pct(0.99)),\"decisions_per_s\":\(perS),\"prefix_cache_bytes\":\(engine.prefixCacheBytes)}")
            }
            for (name, prefix, labelOnly) in variants {
                engine.tuning.prefixCache = prefix
                engine.tuning.labelOnlyLogits = labelOnly
                engine.invalidatePrefixCache()
                _ = try engine.decide(prompt: constant + reading(), labels: labelList, cacheKey: "bench")
                var lat: [Double] = []
                var cached = 0, promptTokens = 0
                let t0 = monotonicMilliseconds()
                for _ in 0..<decisions {
                    let r = try engine.decide(prompt: constant + reading(), labels: labelList, cacheKey: "bench")
                    lat.append(r.elapsedMs)
                    cached = r.cachedTokens
                    promptTokens = r.promptTokens
                }
                row(name, lat, perS: Double(decisions) / (monotonicMilliseconds() - t0) * 1000, promptTokens: promptTokens, cached: cached)
            }
            if decideBatch > 1 {
                // Latency of a batched decision = the whole batch's time (every member waits for it).
                engine.tuning = Engine.DecideTuning()
                engine.invalidatePrefixCache()
                _ = try engine.decide(prompt: constant + reading(), labels: labelList, cacheKey: "bench")
                var lat: [Double] = []
                var cached = 0, promptTokens = 0, done = 0
                let t0 = monotonicMilliseconds()
                while done < decisions {
                    let batch = (0..<decideBatch).map { _ in Engine.DecideRequest(prompt: constant + reading(), labels: labelList) }
                    for r in engine.decide(batch: batch, cacheKey: "bench") {
                        let d = try r.get()
                        lat.append(d.elapsedMs)
                        cached = d.cachedTokens
                        promptTokens = d.promptTokens
                    }
                    done += decideBatch
                }
                row("prefix cache + label-only, batches of \(decideBatch)", lat, perS: Double(done) / (monotonicMilliseconds() - t0) * 1000,
                    promptTokens: promptTokens, cached: cached)
            }
            let rssAfter = MemoryUsage.current()
            out.append("|   prefix cache holds \(engine.prefixCacheBytes) B; anonymous RSS \(rssBefore.anon >> 20) → \(rssAfter.anon >> 20) MiB |")
        }
        if json {
            print(Self.jsonDocument(kind: "decide", rows: jsonRows))
        } else {
            print("| kernel | threads | variant | prompt tokens | p50 ms | p95 ms | p99 ms | decisions/s |")
            print("|---|---|---|---|---|---|---|---|")
            for r in out { print(r) }
        }
    }

    /// Reads the whole mapped model once with the engine's threads (pages already cached by the
    /// runs above) and returns bytes/s: the memory-bandwidth ceiling for generation.
    func readBandwidth(_ engine: Engine) -> Double {
        let file = engine.model.file
        guard let first = file.tensors.first else { return 0 }
        let base = file.data(of: first) - first.offset
        let words = (file.fileSize - file.dataStart) / 8
        let pool = engine.context.pool
        var best = 0.0
        for _ in 0..<3 {
            let t0 = monotonicMilliseconds()
            let sink = UnsafeMutablePointer<UInt64>.allocate(capacity: pool.threadCount)
            pool.parallelChunks(words, granularity: 4096) { part, start, end in
                let p = base.assumingMemoryBound(to: UInt64.self)
                var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0, d: UInt64 = 0
                var i = start
                while i + 4 <= end {
                    a ^= p[i]; b ^= p[i + 1]; c ^= p[i + 2]; d ^= p[i + 3]
                    i += 4
                }
                sink[part] = a ^ b ^ c ^ d
            }
            let dt = monotonicMilliseconds() - t0
            sink.deallocate()
            best = max(best, Double(words * 8) / dt * 1000)
        }
        return best
    }
}
