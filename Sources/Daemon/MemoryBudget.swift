import ConfigTree
import DaemonConfig
import SensorPlugins

/// `limits.memory_budget_mb`: what the daemon may hold beyond the model mapping, the model's
/// copies (repacked weights, the Q8_0 head) and the KV cache. Every buffer that grows with input
/// has a bound from the configuration; this adds the worst cases up, so a configuration that
/// could outgrow its budget is refused before it runs (check-config, start-up, SIGHUP).
/// docs/daemon.md "Memory budget" lists the shares.
public struct MemoryBudget: Sendable, Equatable {
    /// Code, the Swift runtime, libmosquitto and libyaml, thread stacks, engine scratch buffers
    /// (measured: an idle daemon on the demo model is ~16 MiB besides its model pages).
    public static let processBaseline = 16 << 20
    /// One answer document at most: a decision (labels, probabilities, generated text) or an
    /// error document (detail, topics), before the generated text.
    static let answerBytes = 4 << 10

    public var baseline: Int
    public var jobQueue: Int
    public var outbox: Int
    public var inFlight: Int
    public var plugins: Int
    /// Reading windows: per windowed route, `ReadingWindow.maxWindowsPerRoute` windows of at most
    /// `ReadingWindow.maxBytes` each.
    public var windows: Int
    public var prefixCache: Int
    public var budget: Int

    public var total: Int { baseline + jobQueue + outbox + inFlight + plugins + windows + prefixCache }

    /// The shares for `config` and its built `plugins`. The prefix cache gets what is left, up to
    /// 32 MiB (the engine drops least recently used prefixes beyond it).
    public init(config: BitnetdConfig, plugins: [any SensorPlugin]) {
        budget = config.limits.memoryBudgetMB << 20
        baseline = Self.processBaseline
        let longestTemplate = config.routes.map { $0.prompt.source.utf8.count }.max() ?? 0
        let longestText = config.routes.map { $0.task == .decide ? 0 : $0.maxTokens * 16 }.max() ?? 0
        // A queued job holds its rendered prompt (template + payload text) and its topics.
        jobQueue = config.queue.size * (config.limits.maxPayloadBytes + longestTemplate + 1024)
        let answer = Self.answerBytes + longestText
        outbox = config.mqtt.outboxMaxMessages * answer
        // What libmosquitto holds: at most max_messages unacknowledged answers are handed to it.
        inFlight = config.mqtt.outboxMaxMessages * answer
        self.plugins = plugins.reduce(0) { $0 + $1.maxBufferedBytes }
        windows = config.routes.filter { $0.window != nil }.count * ReadingWindow.maxWindowsPerRoute * ReadingWindow.maxBytes
        let rest = budget - (baseline + jobQueue + outbox + inFlight + self.plugins + windows)
        prefixCache = max(0, min(32 << 20, rest))
    }

    /// The problem with a configuration that does not fit, or nil.
    public var problem: String? {
        guard baseline + jobQueue + outbox + inFlight + plugins + windows > budget else { return nil }
        func mib(_ b: Int) -> String { String(format1(Double(b) / 1_048_576)) }
        return "the configured limits need up to \(mib(total)) MiB but limits.memory_budget_mb is \(budget >> 20): "
            + "baseline \(mib(baseline)), job queue \(mib(jobQueue)) (queue.size × limits.max_payload_bytes), "
            + "outbox \(mib(outbox)) and unacknowledged \(mib(inFlight)) (mqtt.outbox.max_messages), plugins \(mib(plugins)), reading windows \(mib(windows)); "
            + "raise memory_budget_mb or lower those limits"
    }

}

private func format1(_ v: Double) -> String {
    let r = (v * 10).rounded() / 10
    return r == r.rounded() ? String(Int(r)) : String(r)
}
