import ArgumentParser
import BitNet
import DaemonConfig
import JSONSchema
import GGUF
import JSONValue
import SensorPlugins
#if canImport(Glibc)
import Glibc
#endif

/// Prints to standard error.
func eprint(_ s: String) {
    writeFD(2, s + "\n")
}

/// Unbuffered write of UTF-8 text to a file descriptor (stdout = 1, stderr = 2).
func writeFD(_ fd: Int32, _ s: String) {
    var t = s
    t.withUTF8 { buf in
        var done = 0
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n <= 0 { if errno == EINTR { continue } else { return } }
            done += n
        }
    }
}

/// Turns engine and file errors into a one-line message and exit code 1.
func fail(_ error: Error) -> ExitCode {
    eprint("error: \(error)")
    return ExitCode(1)
}

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the GGUF model file.")
    var model: String

    @Option(name: .long, help: "Worker threads (default: one per CPU).")
    var threads: Int = 0

    @Option(name: .long, help: "KV-cache length in tokens (default: min(trained context, 4096)).")
    var context: Int = 0

    @Option(name: .long, help: "Pre-tokenizer: llama3 (trained), default (bitnet.cpp parity) or gpt2. Default: from the file.")
    var preTokenizer: String?

    @Option(help: "LM head: file (the file's own weights, exact) or q8_0 (a Q8_0 copy built at load: faster generation, slightly different logits).")
    var lmHead: LMHead = .file

    @Option(help: "Forward pass: bitnet-b1.58 (2B4T: ReLU²), bitnet (SiLU, sub-norms) or llama (SwiGLU, no sub-norms). Default: chosen from the file (`inspect` says which and why).")
    var graph: ModelGraph?

    @Option(help: "I2_S block layout: 128 (published files, x86 conversions) or 64 (ARM conversions since Nov 2025, repacked at load). `inspect --i2s-block auto` tells which fits.")
    var i2sBlock = 128

    func validate() throws {
        if let p = preTokenizer, PreTokenizer(rawValue: p) == nil && PreTokenizer(ggmlName: p) == nil {
            throw ValidationError("unknown pre-tokenizer '\(p)' (llama3, default, gpt2, falcon3)")
        }
    }

    /// The engine with the options of the command line (and `BITNETD_KERNEL`).
    func engine() throws -> Engine {
        let pre = preTokenizer.flatMap { PreTokenizer(rawValue: $0) ?? PreTokenizer(ggmlName: $0) }
        var options = EngineOptions(threads: threads, contextLength: context, kernel: try KernelPath.fromEnvironment(),
                                    preTokenizer: pre, lmHead: lmHead)
        options.graph = graph
        guard i2sBlock == 128 || i2sBlock == 64 else { throw ValidationError("--i2s-block must be 128 or 64") }
        options.i2sBlock = i2sBlock
        return try Engine(modelPath: model, options: options)
    }
}

/// JSON text of a string and of a number, through the daemon's JSON encoder (one escaping rule).
/// Writes a whole text file; false if it cannot.
func writeTextFile(_ path: String, _ text: String) -> Bool {
    guard let f = fopen(path, "w") else { return false }
    defer { fclose(f) }
    let bytes = Array(text.utf8)
    return bytes.isEmpty || fwrite(bytes, 1, bytes.count, f) == bytes.count
}

func jsonString(_ s: String) -> String { JSON.string(s).serialized }

func jsonNumber(_ v: Double) -> String { JSON.format(v) }

// MARK: - inspect

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model file's architecture, hyper-parameters, tensors and tokenizer, and what the engine will do with it.")

    @Argument(help: "Path of the GGUF model file.")
    var model: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Option(help: "Forward pass to check the file against (bitnet-b1.58, bitnet, llama); default: chosen from the file.")
    var graph: ModelGraph?

    @Option(help: "I2_S block layout: 128, 64, or auto (run short fixed texts under both layouts, report the best perplexity of each and pick the lower).")
    var i2sBlock = "128"

    /// Short texts of different kinds. A model read with the wrong I2_S layout computes garbage
    /// on all of them; a model read right predicts at least one well (an LLM every one, a small
    /// domain model the one of its domain), so the score of a layout is its best perplexity.
    static let probeTexts = [
        "The quick brown fox jumps over the lazy dog, and the sun rises in the east every morning.",
        "greenhouse: temperature 31.5 C, humidity 40 %, soil 12 %, light 820 klux. action: water",
        "machine: vibration 2.1 mm/s, temperature 65 C, current 4.2 A. status: normal",
        "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.",
        "def f(x):\n    return x * 2\n\nfor i in range(10):\n    print(f(i))\n",
    ]

    /// The best (lowest) perplexity over the probe texts with this I2_S layout.
    func perplexity(block: Int) throws -> Double {
        var o = EngineOptions(threads: 0, contextLength: 256)
        o.graph = graph
        o.i2sBlock = block
        let engine = try Engine(modelPath: model, options: o)
        let V = engine.model.hp.vocabSize
        var best = Double.infinity
        for text in Self.probeTexts {
            let ids = engine.tokenizer.encode(text)
            guard ids.count > 1 else { continue }
            engine.context.reset()
            let logits = try engine.context.forward(ids, logits: .all)
            var nll = 0.0
            for p in 0..<(ids.count - 1) {
                let row = logits[(p * V)..<((p + 1) * V)]
                let mx = Double(row.max()!)
                let lse = mx + log(row.reduce(0.0) { $0 + exp(Double($1) - mx) })
                nll += lse - Double(row[p * V + Int(ids[p + 1])])
            }
            best = min(best, exp(nll / Double(ids.count - 1)))
        }
        return best
    }

    func run() throws {
        let file: GGUFFile
        do { file = try GGUFFile(path: model) } catch { throw fail(error) }
        var problems: [String] = []
        var loaded: BitNetModel?
        var tokenizer: Tokenizer?
        var block = 128
        var probe: (p128: Double, p64: Double)?
        switch i2sBlock {
        case "128": block = 128
        case "64": block = 64
        case "auto":
            if file.tensors.contains(where: { $0.type == .i2_s }) {
                do {
                    let p = (try perplexity(block: 128), try perplexity(block: 64))
                    probe = p
                    block = p.1 < p.0 ? 64 : 128
                } catch { problems.append("\(error)") }
            }
        default: throw ValidationError("--i2s-block must be 128, 64 or auto")
        }
        do { loaded = try BitNetModel(file: file, graph: graph, i2sBlock: block) } catch { problems.append("\(error)") }
        do { tokenizer = try Tokenizer(file: file) } catch { problems.append("\(error)") }
        let kernel = (try? KernelSet(forced: KernelPath.fromEnvironment()))?.name ?? "?"
        if json {
            var out = "{\"path\":\(jsonString(model)),\"version\":\(file.version),\"file_bytes\":\(file.fileSize),"
            out += "\"alignment\":\(file.alignment),\"data_start\":\(file.dataStart),\"metadata\":{"
            out += file.keys.map { k in
                let v = file.metadata[k]!
                let rendered: String
                switch v {
                case .string(let s): rendered = jsonString(s)
                case .array(let a): rendered = "{\"type\":\(jsonString("\(a.elementType)")),\"count\":\(a.count)}"
                case .bool(let b): rendered = b ? "true" : "false"
                default: rendered = v.integer.map { "\($0)" } ?? jsonNumber(v.float ?? .nan)
                }
                return jsonString(k) + ":" + rendered
            }.joined(separator: ",")
            out += "},\"tensors\":["
            out += file.tensors.map { t in
                "{\"name\":\(jsonString(t.name)),\"type\":\"\(t.type.name)\",\"dims\":[\(t.dims.map(String.init).joined(separator: ","))],\"offset\":\(file.dataStart + t.offset),\"bytes\":\(t.byteCount)}"
            }.joined(separator: ",")
            out += "]"
            if let m = loaded {
                let hp = m.hp
                out += ",\"model\":{\"architecture\":\(jsonString(hp.architecture)),\"name\":\(jsonString(hp.name)),\"vocab\":\(hp.vocabSize),\"context\":\(hp.trainedContext),\"embedding\":\(hp.embedding),\"layers\":\(hp.layers),\"feed_forward\":\(hp.feedForward),\"heads\":\(hp.heads),\"kv_heads\":\(hp.kvHeads),\"head_dim\":\(hp.headDim),\"rope_dims\":\(hp.ropeDims),\"rope_base\":\(hp.ropeBase),\"rms_epsilon\":\(hp.rmsEpsilon),\"activation\":\"\(hp.activation.rawValue)\",\"tied_output\":\(m.tiedOutput),\"ternary_type\":\"\(m.layers.first?.q.type.name ?? "")\",\"kv_cache_bytes_per_token\":\(m.kvCacheBytes(tokens: 1))}"
                out += ",\"graph\":{\"name\":\(jsonString(hp.graph.rawValue)),\"reason\":\(jsonString(hp.graphReason)),\"rope\":\"\(hp.rope.rawValue)\",\"sub_norms\":\(m.layers.first?.attnSubNorm != nil),\"biases\":\(m.layers.first?.qBias != nil)}"
                // I2_S block layout read (128 = the published x86 layout, on every CPU, unless told).
                out += ",\"i2s_block\":\(block)"
                if let p = probe {
                    out += ",\"i2s_block_probe\":{\"perplexity_128\":\(jsonNumber(p.p128)),\"perplexity_64\":\(jsonNumber(p.p64)),\"pick\":\(block)}"
                }
            }
            if let t = tokenizer {
                out += ",\"tokenizer\":{\"tokens\":\(t.vocabularySize),\"pre_tokenizer\":\"\(t.preTokenizer.rawValue)\",\"bos\":\(t.bos.map { "\($0)" } ?? "null"),\"eos\":\(t.eos.map { "\($0)" } ?? "null"),\"add_bos\":\(t.addBOS),\"end_of_generation\":[\(t.endOfGeneration.sorted().map { "\($0)" }.joined(separator: ","))]}"
            }
            out += ",\"kernel\":\"\(kernel)\",\"usable\":\(problems.isEmpty),\"problems\":[\(problems.map(jsonString).joined(separator: ","))]}"
            print(out)
        } else {
            print("file:          \(model)")
            print("format:        GGUF v\(file.version), \(file.fileSize) bytes, alignment \(file.alignment), data at \(file.dataStart)")
            print("metadata (\(file.keys.count)):")
            for k in file.keys { print("  \(k) = \(file.metadata[k]!.summary)") }
            print("tensors (\(file.tensors.count)):")
            var byType: [String: (Int, Int)] = [:]
            for t in file.tensors {
                print("  \(t.name)  \(t.type.name)  \(t.dims)  \(t.byteCount) B")
                byType[t.type.name, default: (0, 0)].0 += 1
                byType[t.type.name, default: (0, 0)].1 += t.byteCount
            }
            print("by type:       " + byType.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value.0) (\($0.value.1) B)" }.joined(separator: ", "))
            if let m = loaded {
                let hp = m.hp
                print("model:         \(hp.architecture) '\(hp.name)': \(hp.layers) layers, d=\(hp.embedding), ff=\(hp.feedForward), heads \(hp.heads)/\(hp.kvHeads) (head \(hp.headDim)), vocab \(hp.vocabSize), context \(hp.trainedContext)")
                print("graph:         \(hp.graph.rawValue) — \(hp.graphReason)")
                if let p = probe {
                    print("I2_S layout:   auto: best perplexity over \(Self.probeTexts.count) fixed texts \(fmt(p.p128, 2)) with 128-value blocks, \(fmt(p.p64, 2)) with 64 → \(block)")
                }
                let subs = m.layers.first?.attnSubNorm != nil ? ", sub-norms" : ", no sub-norms"
                let biases = m.layers.first?.qBias != nil ? ", q/k/v/o biases" : ""
                print("numerics:      W1.58A8 (per-token int8 activations, int32 accumulation), FFN \(hp.activation == .relu2 ? "ReLU²" : "SiLU-gated")\(subs)\(biases), \(hp.rope == .neox ? "NEOX" : "NORM") RoPE θ=\(hp.ropeBase) on \(hp.ropeDims) dims, RMSNorm ε=\(hp.rmsEpsilon), I2_S blocks of \(m.i2sBlock)\(m.repackedBytes > 0 ? " (repacked at load: \(m.repackedBytes >> 20) MiB)" : "")")
                let template = file.metadata["tokenizer.chat_template"]?.string
                print("chat format:   \(ChatFormat.detect(template: template)?.rawValue ?? "unrecognised template (no --chat)")\(template == nil ? " (no tokenizer.chat_template)" : "")")
                print("LM head:       \(m.tiedOutput ? "tied to token_embd" : "output.weight") (\(m.output.type.name))\(m.ignoredOutputWeight ? "; the file's output.weight is not used (the \(hp.graph.rawValue) graph always multiplies by token_embd, as bitnet.cpp)" : "")")
                print("KV cache:      F16, \(m.kvCacheBytes(tokens: 1)) B/token (\(m.kvCacheBytes(tokens: 4096) >> 20) MiB at 4096)")
            }
            if let t = tokenizer {
                print("tokenizer:     \(t.model == .spm ? "SentencePiece (space prefix \(t.addSpacePrefix ? "on" : "off"), byte fallback)" : "byte-level BPE"), \(t.vocabularySize) tokens\(t.model == .spm ? "" : ", pre-tokenizer " + t.preTokenizer.rawValue)\(file.metadata["tokenizer.ggml.pre"] == nil ? " (no tokenizer.ggml.pre: using the trained Llama-3 pattern)" : ""), BOS \(t.bos.map { "\($0)" } ?? "-")\(t.addBOS ? " (added)" : ""), EOG \(t.endOfGeneration.sorted())")
            }
            print("kernel path:   \(kernel) (available: \(KernelSet.availablePaths.joined(separator: ", ")))")
            if problems.isEmpty {
                print("status:        usable")
            } else {
                for p in problems { print("problem:       \(p)") }
            }
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }
}

// MARK: - generate

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it to standard output; timing goes to standard error.")

    @OptionGroup var options: ModelOptions

    @Option(help: "The prompt text.")
    var prompt: String

    @Flag(help: "Wrap the prompt in the model's chat format, chosen from the file's tokenizer.chat_template as llama.cpp does: bitnet (2B4T: System:/User:/Assistant:, also without a template), llama3 (header tokens), falcon3 (<|user|>/<|assistant|>), chatml, phi3. `inspect` shows which.")
    var chat = false

    @Option(help: "System message for --chat.")
    var system: String?

    @Option(help: "Maximum tokens to generate.")
    var maxTokens = 128

    @Option(help: "Sampling temperature; 0 = greedy.")
    var temperature = 0.8

    @Option(help: "Top-k cut (0 = off).")
    var topK = 40

    @Option(help: "Top-p (nucleus) cut.")
    var topP = 0.95

    @Option(help: "Min-p cut.")
    var minP = 0.05

    @Option(help: "Repetition penalty (1 = off).")
    var repeatPenalty = 1.0

    @Option(help: "Random seed (default: time-based).")
    var seed: UInt64?

    @Option(help: "Stop string (repeatable).")
    var stop: [String] = []

    @Flag(help: "Keep generating past end-of-generation tokens.")
    var ignoreEos = false

    @Option(help: "Generate compact JSON valid for this JSON Schema (a file; the supported subset is in docs/extract.md). Standard output gets exactly the JSON text and one newline.")
    var schema: String?

    @Option(help: ArgumentHelp("With --schema: write each output token as a JSON line {token, forced, allowed} to this file (for tests).", visibility: .hidden))
    var constraintTrace: String?

    func validate() throws {
        if schema != nil && ignoreEos { throw ValidationError("--schema ends generation when the JSON value is complete; --ignore-eos does not apply") }
        if schema != nil && !stop.isEmpty { throw ValidationError("--schema ends generation when the JSON value is complete; --stop does not apply") }
        if constraintTrace != nil && schema == nil { throw ValidationError("--constraint-trace needs --schema") }
    }

    func run() throws {
        var compiled: JSONSchema?
        if let schema {
            do {
                compiled = try loadSchemaFile(schema)
            } catch {
                eprint("error: \(error)")
                throw ExitCode(1)
            }
            if let c = compiled, maxTokens < c.minimumBytes {
                eprint("error: --max-tokens \(maxTokens) is below the schema's shortest output, \(c.minimumBytes) bytes (a token per byte at worst); raise --max-tokens")
                throw ExitCode(1)
            }
        }
        do {
            let engine = try options.engine()
            eprint("model: \(engine.modelName) (\(engine.model.hp.architecture)), kernel \(engine.kernelName), \(engine.threads) threads, loaded in \(Int(engine.loadMs)) ms")
            var g = GenerateOptions()
            g.maxTokens = maxTokens
            g.temperature = temperature
            g.topK = topK
            g.topP = topP
            g.minP = minP
            g.repeatPenalty = repeatPenalty
            g.seed = seed
            g.stop = stop
            g.stopAtEOG = !ignoreEos
            g.chat = chat
            g.system = system
            g.schema = compiled
            g.traceConstraint = constraintTrace != nil
            let r = try engine.generate(prompt: prompt, options: g) { piece in
                writeFD(1, piece)
                return true
            }
            print("")
            let pp = Double(r.promptTokens) / max(r.promptMs, 1e-9) * 1000
            let tg = Double(max(r.generatedTokens - 1, 0)) / max(r.generateMs, 1e-9) * 1000
            let forced = compiled == nil ? "" : " (\(r.forcedTokens) forced; \(r.modelSteps) model passes)"
            eprint("prompt: \(r.promptTokens) tokens in \(fmt(r.promptMs)) ms (\(fmt(pp)) t/s); generated \(r.generatedTokens) tokens\(forced) in \(fmt(r.generateMs)) ms (\(fmt(tg)) t/s); stop: \(r.stopReason.rawValue)")
            if let path = constraintTrace {
                let lines = r.trace.map { "{\"token\":\($0.token),\"forced\":\($0.forced),\"pass\":\($0.pass),\"allowed\":[\($0.allowed.map(String.init).joined(separator: ","))]}\n" }
                guard writeTextFile(path, lines.joined()) else {
                    eprint("error: cannot write \(path)")
                    throw ExitCode(2)
                }
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            throw fail(error)
        }
    }
}

/// The p-quantile (0…1) of ascending values, nearest rank from below; NaN when there are none.
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func fmt(_ v: Double, _ digits: Int = 1) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (v * p).rounded() / p
    return "\(r)"
}

// MARK: - decide

struct Decide: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a fixed set of labels as continuations of a prompt and print the most probable one.")

    @OptionGroup var options: ModelOptions

    @Option(help: "The prompt text; each label is scored as the text that follows it.")
    var prompt: String?

    @Option(help: "Comma-separated labels.")
    var labels: String?

    @Option(name: .customLong("label"), help: "One label (repeatable; for labels that contain commas), instead of --labels.")
    var labelList: [String] = []

    @Flag(help: "Decide every prompt read from stdin (JSON Lines: one JSON string per line), printing one JSON answer per line in order; one model load for all, and the prompts' common prefix is computed once.")
    var stdin = false

    @Option(help: "Answer 'unsure' when the best probability is below this.")
    var minConfidence: Double = 0

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if (prompt != nil) == stdin { throw ValidationError("give --prompt or --stdin") }
        if (labels != nil) == !labelList.isEmpty { throw ValidationError("give --labels or --label (repeatable)") }
    }

    func answer(_ r: DecideResult, model: String) -> String {
        let best = r.probabilities[r.best] < minConfidence ? "unsure" : r.labels[r.best]
        let probs = zip(r.labels, r.probabilities).map { "\(jsonString($0)):\(jsonNumber($1))" }.joined(separator: ",")
        return "{\"label\":\(jsonString(best)),\"probabilities\":{\(probs)},\"tokens\":{\"prompt\":\(r.promptTokens),\"cached\":\(r.cachedTokens)},\"latency_ms\":\(fmt(r.elapsedMs, 3)),\"model\":\(jsonString(model))}"
    }

    func run() throws {
        let list = labelList.isEmpty ? labels!.split(separator: ",").map(String.init) : labelList
        guard !list.isEmpty else { throw ValidationError("--labels needs at least one label") }
        if stdin {
            let engine: Engine
            do { engine = try options.engine() } catch { throw fail(error) }
            var n = 0, failed = 0
            while let line = readLine(strippingNewline: true) {
                n += 1
                guard case .string(let p)? = try? JSON.parse(line) else {
                    eprint("bitnetd decide: line \(n): expected a JSON string")
                    print("null")
                    failed += 1
                    continue
                }
                do {
                    print(answer(try engine.decide(prompt: p, labels: list, cacheKey: "stdin"), model: engine.modelName))
                } catch {
                    eprint("bitnetd decide: line \(n): \(error)")
                    print("null")
                    failed += 1
                }
                fflush(nil)
            }
            if failed > 0 { throw ExitCode(1) }
            return
        }
        do {
            let engine = try options.engine()
            let r = try engine.decide(prompt: prompt!, labels: list)
            let best = r.probabilities[r.best] < minConfidence ? "unsure" : r.labels[r.best]
            if json {
                print(answer(r, model: engine.modelName))
            } else {
                print(best)
                for (l, p) in zip(r.labels, r.probabilities) { eprint("  \(l): \(fmt(p, 4))") }
                eprint("latency: \(fmt(r.elapsedMs, 2)) ms (\(r.promptTokens) prompt tokens)")
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            throw fail(error)
        }
    }
}

extension LMHead: ExpressibleByArgument {}
extension ModelGraph: ExpressibleByArgument {}
extension KernelPath: ExpressibleByArgument {}
