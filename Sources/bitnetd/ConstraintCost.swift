import ArgumentParser
import BitNet
import DaemonConfig
import GGUF
import JSONSchema
import Platform

/// `bitnetd dev constraint-cost`: what schema-constrained decoding costs per token on a
/// vocabulary, without a model — the trie build, then the allowed-token computation at every
/// token boundary of an example output (as if each token were sampled there).
struct ConstraintCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "constraint-cost",
        abstract: "Measure schema-constrained decoding per token on a vocabulary (a vocabulary-only GGUF is enough).")

    @Option(help: "GGUF file whose vocabulary is used.")
    var vocab: String

    @Option(help: "JSON Schema file.")
    var schema: String

    @Option(help: "An output valid for the schema (compact JSON), tokenized with the vocabulary.")
    var example: String

    @Option(help: "Times to repeat the walk (figures are per step over all repeats).")
    var repeats = 5

    @Flag(help: "Print every masked step.")
    var verbose = false

    func run() throws {
        let compiled = try loadSchemaFile(schema)
        let tokenizer = try Tokenizer(file: GGUFFile(path: vocab))
        let t0 = monotonicMilliseconds()
        let vocabulary = ConstrainedVocabulary(tokenizer: tokenizer)
        let buildMs = monotonicMilliseconds() - t0
        let matcher = SchemaMatcher(schema: compiled)
        let ids = tokenizer.encode(example, addSpecial: false, parseSpecial: false)
        var times: [Double] = []
        var allowedCounts: [Int] = []
        var forcedSteps = 0
        var allowed: [Int32] = []
        for _ in 0..<repeats {
            var state = matcher.initial
            for id in ids {
                let s = monotonicMilliseconds()
                let forced = matcher.forcedBytes(state)
                if forced.isEmpty {
                    vocabulary.allowedTokens(matcher, state, budget: 1 << 20, into: &allowed)
                    times.append(monotonicMilliseconds() - s)
                    if verbose {
                        print("step: \(fmt(times.last!)) ms, \(allowed.count) allowed, \(matcher.stringContext(state) != nil ? "in a string" : "structure"), before '\(String(decoding: tokenizer.bytes(of: id), as: UTF8.self))'")
                    }
                    allowedCounts.append(allowed.count)
                    guard allowed.contains(id) else {
                        throw ValidationError("the example's token \(id) (\(String(decoding: tokenizer.bytes(of: id), as: UTF8.self))) is not allowed by the schema here")
                    }
                } else {
                    forcedSteps += 1
                }
                state = matcher.step(state, tokenizer.bytes(of: id))
            }
            guard matcher.isComplete(state) else { throw ValidationError("the example is not a complete instance of the schema") }
        }
        times.sort()
        let mean = times.reduce(0, +) / Double(max(times.count, 1))
        print("vocabulary \(tokenizer.vocabularySize) tokens, trie \(vocabulary.trieNodes) nodes, built in \(fmt(buildMs)) ms")
        print("example: \(ids.count) tokens; per repeat \(times.count / repeats) masked steps, \(forcedSteps / repeats) at forced positions")
        print("mask per step: mean \(fmt(mean)) ms, p50 \(fmt(percentile(times, 0.5))) ms, p95 \(fmt(percentile(times, 0.95))) ms, max \(fmt(times.last ?? 0)) ms; allowed tokens per step: median \(allowedCounts.sorted()[allowedCounts.count / 2])")
    }
}
