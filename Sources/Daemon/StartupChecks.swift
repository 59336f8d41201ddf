import DaemonConfig
import GGUF
import Glibc

/// Checks done before the model is loaded (DESIGN.md §8 "Start-up check").
public enum StartupChecks {
    public struct MemoryEstimate: Sendable {
        public var modelBytes: Int
        public var kvCacheBytes: Int
        public var contextLength: Int
        public var availableBytes: Int?
        /// The Q8_0 LM-head copy (`model.lm_head: q8_0`), 0 without.
        public var headCopyBytes: Int
        public var total: Int { modelBytes + kvCacheBytes + headCopyBytes }

        public init(modelBytes: Int, kvCacheBytes: Int, contextLength: Int, availableBytes: Int?, headCopyBytes: Int = 0) {
            self.headCopyBytes = headCopyBytes
            self.modelBytes = modelBytes
            self.kvCacheBytes = kvCacheBytes
            self.contextLength = contextLength
            self.availableBytes = availableBytes
        }
    }

    /// Model file size + F16 KV cache (2 × layers × kv_heads × head_dim × context × 2 bytes) for
    /// the configured context, from the file's metadata, against `MemAvailable`.
    public static func estimateMemory(model: ModelConfig) throws -> MemoryEstimate {
        let file = try GGUFFile(path: model.path)
        let arch = file.architecture ?? "bitnet-b1.58"
        func int(_ key: String) -> Int? { file.metadata["\(arch).\(key)"]?.integer.map { Int($0) } }
        let layers = int("block_count") ?? 0
        let embd = int("embedding_length") ?? 0
        let heads = max(1, int("attention.head_count") ?? 1)
        let kvHeads = int("attention.head_count_kv") ?? heads
        let trained = int("context_length") ?? 4096
        let ctx = model.context > 0 ? model.context : min(trained, 4096)
        let kv = 2 * layers * kvHeads * (embd / heads) * ctx * 2
        // The head copy: one int8 per weight plus a float scale per 32.
        var copy = 0
        if model.lmHead == "q8_0", let head = file.tensor(named: "output.weight") ?? file.tensor(named: "token_embd.weight") {
            let n = head.dims.reduce(1, *)
            copy = n + n / 32 * 4
        }
        return MemoryEstimate(modelBytes: file.fileSize, kvCacheBytes: kv, contextLength: ctx,
                              availableBytes: availableMemoryBytes(), headCopyBytes: copy)
    }

    public enum Verdict: Sendable, Equatable {
        case ok(String)
        case warn(String)
        case refuse(String)
    }

    /// The start-up decision with its figures (`model.memory_check`: refuse, warn or off).
    public static func verdict(_ m: MemoryEstimate, policy: String) -> Verdict {
        guard let avail = m.availableBytes else { return .ok("MemAvailable unknown; not checked") }
        let copy = m.headCopyBytes > 0 ? " + LM-head copy \(mib(m.headCopyBytes))" : ""
        let figures = "model \(mib(m.modelBytes)) + KV cache \(mib(m.kvCacheBytes)) for \(m.contextLength) tokens\(copy) = \(mib(m.total)); MemAvailable \(mib(avail))"
        guard m.total > avail else { return .ok(figures) }
        switch policy {
        case "refuse": return .refuse(figures)
        case "warn": return .warn(figures)
        default: return .ok(figures)
        }
    }

    public static func mib(_ bytes: Int) -> String {
        let v = Double(bytes) / 1_048_576
        if v < 10 { return "\(Double(Int(v * 10)) / 10) MiB" }
        return "\(Int(v.rounded())) MiB"
    }
}
