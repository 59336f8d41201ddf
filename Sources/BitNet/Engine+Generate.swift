#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GGUF
import Platform

/// Free text generation with sampling and stop strings.
extension Engine {
    /// Logits with a NaN or an infinity come from a corrupt model file: refuse to sample from them.
    static func requireFinite(_ logits: [Float]) throws {
        if let bad = logits.firstIndex(where: { !$0.isFinite }) {
            throw RequestError("the model produced a non-finite logit (\(logits[bad]) for token \(bad)); the model file is probably corrupt")
        }
    }

    public func generate(prompt: String, options: GenerateOptions, onText: (String) -> Bool) throws -> GenerateResult {
        var text = prompt
        if options.chat {
            guard let format = chatFormat else {
                throw RequestError("the file's chat template (tokenizer.chat_template) is none bitnetd recognises (\(ChatFormat.allCases.map(\.rawValue).joined(separator: ", "))); write the prompt in the model's format without --chat")
            }
            text = format.render(user: prompt, system: options.system)
        }
        let ids = tokenizer.encode(text)
        guard !ids.isEmpty else { throw RequestError("the prompt is empty") }
        guard ids.count < context.contextLength else {
            throw RequestError("prompt of \(ids.count) tokens does not fit the context length \(context.contextLength)")
        }
        if let schema = options.schema {
            return try generateConstrained(prompt: ids, schema: schema, options: options, onText: onText)
        }
        let t0 = monotonicMilliseconds()
        context.reset()
        var logits = try context.forward(ids, logits: .last)
        // Generation overwrote the KV cache the prefix snapshots were taken from; snapshots are
        // copies, so they stay valid.
        let t1 = monotonicMilliseconds()
        var sampler = Sampler(options: options)
        var history = ids
        var stream = TextStream(tokenizer: tokenizer)
        var produced = ""
        var generated = 0
        var reason = StopReason.maxTokens
        loop: while generated < options.maxTokens {
            try Engine.requireFinite(logits)
            let next = sampler.sample(logits, history: history)
            generated += 1
            if options.stopAtEOG && tokenizer.endOfGeneration.contains(next) {
                reason = .endOfGeneration
                break
            }
            history.append(next)
            let piece = stream.push(next)
            if !piece.isEmpty {
                produced += piece
                if let stop = options.stop.first(where: { produced.firstRange(of: $0) != nil }),
                   let r = produced.firstRange(of: stop) {
                    let keep = String(produced[..<r.lowerBound])
                    let already = produced.count - piece.count
                    if keep.count > already { _ = onText(String(keep.dropFirst(already))) }
                    produced = keep
                    reason = .stopString
                    break loop
                }
                if !onText(piece) {
                    reason = .cancelled
                    break
                }
            }
            if generated >= options.maxTokens { break }
            if context.position >= context.contextLength {
                reason = .contextFull
                break
            }
            logits = try context.forward([next], logits: .last)
        }
        let rest = stream.flush()
        if !rest.isEmpty && reason != .stopString {
            produced += rest
            _ = onText(rest)
        }
        return GenerateResult(text: produced, promptTokens: ids.count, cachedTokens: 0, generatedTokens: generated,
                              stopReason: reason, promptMs: t1 - t0, generateMs: monotonicMilliseconds() - t1)
    }
}
