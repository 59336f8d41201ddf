import BitNet
import DaemonConfig
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

    /// The model's footprint (`BitNetModel.footprint`: file, F16 KV cache for the configured
    /// context, the LM-head copy) against `MemAvailable`.
    public static func estimateMemory(model: ModelConfig) throws -> MemoryEstimate {
        let f = try BitNetModel.footprint(path: model.path, contextLength: model.context, q8Head: model.lmHead == "q8_0")
        return MemoryEstimate(modelBytes: f.fileBytes, kvCacheBytes: f.kvCacheBytes, contextLength: f.contextLength,
                              availableBytes: availableMemoryBytes(), headCopyBytes: f.headCopyBytes)
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
