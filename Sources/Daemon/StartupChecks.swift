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
        let f = try BitNetModel.footprint(path: model.path, contextLength: model.context, q8Head: model.lmHead == "q8_0",
                                          i2sBlock: model.i2sBlock)
        return MemoryEstimate(modelBytes: f.fileBytes, kvCacheBytes: f.kvCacheBytes, contextLength: f.contextLength,
                              availableBytes: availableMemoryBytes(), headCopyBytes: f.headCopyBytes)
    }

    /// Every model the configuration loads — `model.path` and each distinct `routes[].model` —
    /// added up (`contextLength` stays the main model's); `models` counts them.
    public static func estimateMemory(config: BitnetdConfig) throws(ModelLoadFailure) -> (estimate: MemoryEstimate, models: Int) {
        var total: MemoryEstimate
        do { total = try estimateMemory(model: config.model) } catch { throw ModelLoadFailure(path: config.model.path, error: error) }
        let extra = config.routeModels.filter { $0 != config.model.path }
        for path in extra {
            let f: ModelFootprint
            do {
                f = try BitNetModel.footprint(path: path, contextLength: routeModelContext(path: path, requested: config.model.context),
                                              q8Head: config.model.lmHead == "q8_0", i2sBlock: config.model.i2sBlock)
            } catch { throw ModelLoadFailure(path: path, error: error) }
            total.modelBytes += f.fileBytes
            total.kvCacheBytes += f.kvCacheBytes
            total.headCopyBytes += f.headCopyBytes
        }
        return (total, 1 + extra.count)
    }

    /// The KV-cache length of a route's own model: its trained context (at most 4096), or
    /// `model.context` when that is set and smaller — a small decision model never gets a longer
    /// cache than it was trained for.
    public static func routeModelContext(path: String, requested: Int) throws -> Int {
        let own = try BitNetModel.footprint(path: path, contextLength: 0, q8Head: false).contextLength
        return requested > 0 ? min(requested, own) : own
    }

    public enum Verdict: Sendable, Equatable {
        case ok(String)
        case warn(String)
        case refuse(String)
    }

    /// The start-up decision with its figures (`model.memory_check`: refuse, warn or off).
    public static func verdict(_ m: MemoryEstimate, policy: String, models: Int = 1) -> Verdict {
        guard let avail = m.availableBytes else { return .ok("MemAvailable unknown; not checked") }
        let copy = m.headCopyBytes > 0 ? " + LM-head copy \(mib(m.headCopyBytes))" : ""
        let figures = "model\(models > 1 ? "s (\(models))" : "") \(mib(m.modelBytes)) + KV cache \(mib(m.kvCacheBytes)) for \(m.contextLength) tokens\(copy) = \(mib(m.total)); MemAvailable \(mib(avail))"
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

/// A model file that cannot be opened, with its path.
public struct ModelLoadFailure: Error, CustomStringConvertible {
    public var path: String
    public var error: any Error
    public var description: String { "cannot load model \(path): \(error)" }
}
