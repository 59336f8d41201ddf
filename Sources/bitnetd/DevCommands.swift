import ArgumentParser
import BitNet
import BitNetTools
import GGUF
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Writes raw little-endian bytes to a file.
func writeFile(_ path: String, _ body: (Int32) throws -> Void) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw RequestError("cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    try body(fd)
}

func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) throws {
    var done = 0
    while done < n {
        let w = write(fd, p + done, n - done)
        if w < 0 {
            if errno == EINTR { continue }
            throw RequestError("write failed: \(String(cString: strerror(errno)))")
        }
        done += w
    }
}

// MARK: - logits

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the logits of every position for given token ids (float32 LE [positions × vocab]), for cross-checking engines.",
        discussion: "Ids are used exactly as given (no BOS added). The first --prompt-len ids are processed as one batch, the rest one at a time (or in the passes --chunks gives, as a schema-constrained generation feeds forced tokens).")

    @OptionGroup var options: ModelOptions

    @Option(help: "Comma-separated token ids.")
    var tokenIds: String

    @Option(help: "Output file.")
    var out: String

    @Option(help: "How many leading ids form the first batch (default: all).")
    var promptLen: Int?

    @Option(help: "Comma-separated sizes of the passes after the first batch (default: 1 each); they must add up to the remaining ids.")
    var chunks: String?

    @Option(help: "Directory to dump every intermediate tensor of the first batch into (manifest.tsv + <name>.bin).")
    var dumpStages: String?

    func run() throws {
        let ids = tokenIds.split(separator: ",").compactMap { Int32($0.trimmingSpaces()) }
        guard !ids.isEmpty, ids.count == tokenIds.split(separator: ",").count else {
            throw ValidationError("--token-ids must be a comma-separated list of integers")
        }
        let p = promptLen ?? ids.count
        guard p >= 1 && p <= ids.count else { throw ValidationError("--prompt-len must be 1...\(ids.count)") }
        do {
            let engine = try options.engine()
            var sink: DumpSink?
            if let dir = dumpStages {
                mkdir(dir, 0o755)
                sink = DumpSink(dir: dir)
            }
            let ctx = engine.context
            ctx.reset()
            var all = try ctx.forward(Array(ids[..<p]), logits: .all, sink: sink)
            var sizes = Array(repeating: 1, count: ids.count - p)
            if let chunks {
                sizes = chunks.split(separator: ",").compactMap { Int($0.trimmingSpaces()) }
                guard sizes.allSatisfy({ $0 >= 1 }), sizes.reduce(0, +) == ids.count - p else {
                    throw ValidationError("--chunks must be positive sizes adding up to \(ids.count - p)")
                }
            }
            var at = p
            for n in sizes {
                all += try ctx.forward(Array(ids[at..<at + n]), logits: .all)
                at += n
            }
            try sink?.finish()
            try writeFile(out) { fd in
                try all.withUnsafeBytes { try writeAll(fd, $0.baseAddress!, $0.count) }
            }
        } catch let e as ExitCode {
            throw e
        } catch let e as ValidationError {
            throw e
        } catch {
            throw fail(error)
        }
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// Writes stage tensors as `<name>.bin` plus a `manifest.tsv` line each.
final class DumpSink: StageSink {
    let dir: String
    var manifest = ""
    var error: Error?

    init(dir: String) { self.dir = dir }

    func floats(_ name: String, rows: Int, cols: Int, _ data: UnsafePointer<Float>) {
        save(name, "f32", rows, cols, UnsafeRawPointer(data), rows * cols * 4)
    }

    func ints(_ name: String, rows: Int, cols: Int, _ data: UnsafePointer<Int32>) {
        save(name, "i32", rows, cols, UnsafeRawPointer(data), rows * cols * 4)
    }

    private func save(_ name: String, _ dtype: String, _ rows: Int, _ cols: Int, _ p: UnsafeRawPointer, _ n: Int) {
        do {
            try writeFile(dir + "/" + name + ".bin") { try writeAll($0, p, n) }
            manifest += "\(name)\t\(dtype)\t\(rows)\t\(cols)\n"
        } catch {
            self.error = error
        }
    }

    func finish() throws {
        if let error { throw error }
        let text = manifest
        try writeFile(dir + "/manifest.tsv") { fd in
            var t = text
            try t.withUTF8 { try writeAll(fd, $0.baseAddress!, $0.count) }
        }
    }
}

// MARK: - dev

struct Dev: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Developer tools: generate test models.",
        subcommands: [MakeModel.self, ConstraintCost.self, ConvertI2S.self])
}

struct MakeModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-model",
        abstract: "Write a random, well-conditioned BitNet model (the layout of the published files) for tests and benchmarks.")

    @Option(help: "Output GGUF path.")
    var out: String

    @Flag(name: .customLong("2b4t"), help: "Use the exact shapes of BitNet b1.58 2B4T (1.19 GB file).")
    var shapes2B4T = false

    @Option(help: "Architecture: bitnet-b1.58, bitnet-25, bitnet or llama.")
    var arch = "bitnet-b1.58"

    @Option(help: "Exact shapes of a published family instead of the options below: 2b4t, falcon3-1b, bitnet-large.")
    var preset: String?

    @Option(help: "Write an untied output.weight of this type (f16, f32, bf16, q8_0, q6_k); default: tied to token_embd.")
    var outputType: String?

    @Flag(help: "Add the optional attn_q/k/v/output biases (arch llama).")
    var bias = false

    @Option(help: "tokenizer.ggml.pre to write (e.g. llama-bpe, falcon3); default: none.")
    var pre: String?

    @Option(help: "Tokenizer model: gpt2 (byte-level BPE) or llama (SentencePiece, as 1bitLLM files).")
    var tokenizer: String?

    @Option(help: "Layers.") var layers = 2
    @Option(help: "Embedding width.") var embd = 128
    @Option(help: "Attention heads.") var heads = 4
    @Option(help: "Key/value heads.") var kvHeads = 2
    @Option(help: "FFN width.") var ff = 256
    @Option(help: "Vocabulary size (≥ 300).") var vocab = 512
    @Option(help: "Trained context length written to the file.") var context = 512
    @Option(help: "Ternary type: i2_s, tq2_0 or tq1_0.") var type = "i2_s"
    @Option(help: "Embedding type: f16, f32, bf16, q8_0 or q6_k.") var embdType = "f16"
    @Option(help: "FFN activation for arch bitnet: relu2 or silu (absent = SiLU).") var hiddenActivation: String?
    @Flag(help: "Add per-tensor scale tensors (arch bitnet).") var scaleTensors = false
    @Option(help: "Random seed.") var seed: UInt64 = 1

    func run() throws {
        var spec = shapes2B4T ? ModelSpec.bitnet2B4T : ModelSpec()
        spec.architecture = arch
        switch preset {
        case nil: break
        case "2b4t"?: spec = ModelSpec.bitnet2B4T
        case "falcon3-1b"?: spec = ModelSpec.falcon3_1B
        case "bitnet-large"?: spec = ModelSpec.bitnetLarge
        case let p?: throw ValidationError("unknown --preset \(p) (2b4t, falcon3-1b, bitnet-large)")
        }
        if !shapes2B4T && preset == nil {
            spec.layers = layers
            spec.embedding = embd
            spec.heads = heads
            spec.kvHeads = kvHeads
            spec.feedForward = ff
            spec.vocab = vocab
            spec.context = context
        }
        let types: [String: GGMLType] = ["i2_s": .i2_s, "tq2_0": .tq2_0, "tq1_0": .tq1_0,
                                         "f16": .f16, "f32": .f32, "bf16": .bf16, "q8_0": .q8_0, "q6_k": .q6_K]
        guard let t = types[type.lowercased()], t.isTernary else { throw ValidationError("--type must be i2_s, tq2_0 or tq1_0") }
        guard let e = types[embdType.lowercased()], !e.isTernary else { throw ValidationError("--embd-type must be f16, f32, bf16, q8_0 or q6_k") }
        spec.ternaryType = t
        spec.embeddingType = e
        if let a = hiddenActivation {
            guard let act = FFNActivation(rawValue: a) else { throw ValidationError("--hidden-activation must be relu2 or silu") }
            spec.hiddenActivation = act
        }
        spec.scaleTensors = scaleTensors
        spec.seed = seed
        if let o = outputType {
            guard let ot = types[o.lowercased()], !ot.isTernary else { throw ValidationError("--output-type must be f16, f32, bf16, q8_0 or q6_k") }
            spec.outputType = ot
        }
        if bias && spec.architecture != "llama" { throw ValidationError("--bias is for --arch llama") }
        spec.biases = bias
        if let pre { spec.preTokenizer = pre }
        if let t = tokenizer {
            guard t == "gpt2" || t == "llama" else { throw ValidationError("--tokenizer must be gpt2 or llama") }
            spec.tokenizerModel = t
        }
        do {
            let t0 = monotonicMilliseconds()
            try ModelFactory.write(spec, to: out) { done, total in
                if (shapes2B4T || preset != nil) && (done % 10 == 0 || done == total) {
                    eprint("  \(done)/\(total) tensors")
                }
            }
            eprint("wrote \(out) in \(fmt((monotonicMilliseconds() - t0) / 1000, 1)) s")
        } catch {
            throw fail(error)
        }
    }
}

/// `bitnetd dev convert-i2s`: rewrites a file's I2_S tensors in the other block layout (128/32 ↔
/// 64/16) — to turn an ARM-converted file into the published layout once, or to make test files.
struct ConvertI2S: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert-i2s",
        abstract: "Rewrite a GGUF's I2_S tensors from one block layout to the other (128 ↔ 64).")

    @Option(help: "Input GGUF.") var input: String
    @Option(help: "Output GGUF.") var out: String
    @Option(help: "Block layout to write: 128 (published) or 64 (ARM builds); the input is read as the other one.") var block: Int

    func run() throws {
        guard block == 128 || block == 64 else { throw ValidationError("--block must be 128 or 64") }
        do {
            let file = try GGUFFile(path: input)
            var w = GGUFWriter()
            for k in file.keys { w.set(k, file.metadata[k]!) }
            for t in file.tensors {
                let src = file.data(of: t)
                let n = t.byteCount
                let codes = t.type == .i2_s ? t.elementCount / 4 : 0
                let to64 = block == 64
                w.addTensor(t.name, type: t.type, dims: t.dims) { buf in
                    buf.copyMemory(from: UnsafeRawBufferPointer(start: src, count: n))
                    if codes > 0 {
                        if to64 { I2SLayout.repack128To64(src, buf.baseAddress!, byteCount: codes) } else {
                            I2SLayout.repack64To128(src, buf.baseAddress!, byteCount: codes)
                        }
                    }
                }
            }
            try w.write(to: out)
            eprint("wrote \(out): I2_S tensors in \(block)-value blocks")
        } catch {
            throw fail(error)
        }
    }
}
