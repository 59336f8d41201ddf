import JSONSchema
import Platform

/// Schema-constrained generation (`task: extract`, `generate --schema`): every token keeps the
/// output a valid prefix of a compact JSON instance of the schema, and the output always finishes.
///
/// Each step: bytes the schema forces (keys, punctuation, the rest of the only possible literal)
/// are tokenized and fed to the model in one pass, without sampling; otherwise the logits of the
/// tokens the recognizer refuses — or that would leave too little of `maxTokens` to finish — are
/// masked out and one token is sampled (greedy at temperature 0). A token's bytes always fit the
/// budget check because every vocabulary has a token per byte: `minCompletion` bytes can always
/// be written in at most that many tokens.
extension Engine {
    func generateConstrained(prompt ids: [Int32], schema: JSONSchema, options: GenerateOptions,
                             onText: (String) -> Bool) throws -> GenerateResult {
        guard options.maxTokens >= schema.minimumBytes else {
            throw RequestError("max_tokens \(options.maxTokens) is below the schema's shortest output (\(schema.minimumBytes) bytes = tokens at worst)")
        }
        let vocabulary = constrainedVocabulary
        let matcher = SchemaMatcher(schema: schema)
        let t0 = monotonicMilliseconds()
        context.reset()
        var logits = try context.forward(ids, logits: .last)
        let t1 = monotonicMilliseconds()
        var sampler = Sampler(options: options)
        var history = ids
        var state = matcher.initial
        var output: [UInt8] = []
        var stream = TextStream(tokenizer: tokenizer)
        var generated = 0, forced = 0, steps = 0
        var allowed: [Int32] = []
        var trace: [ConstraintStep] = []
        var reason = StopReason.endOfGeneration

        func emit(_ tokens: [Int32]) -> Bool {
            var text = ""
            for t in tokens { text += stream.push(t) }
            return text.isEmpty || onText(text)
        }

        while !matcher.isFinished(state) {
            try Engine.requireFinite(logits)
            let room = context.contextLength - context.position
            let forcedBytes = matcher.forcedBytes(state)
            if !forcedBytes.isEmpty {
                // Forced bytes are part of every completion, so their tokens (at most one per
                // byte) fit the budget the previous step checked.
                let tokens = tokenizer.encode(bytes: forcedBytes)
                guard tokens.count <= room else { throw SchemaFailure("the context is full (\(context.contextLength) tokens) before the JSON value is complete") }
                state = matcher.step(state, forcedBytes)
                output += forcedBytes
                history += tokens
                generated += tokens.count
                forced += tokens.count
                steps += 1
                if options.traceConstraint { trace += tokens.map { ConstraintStep(token: $0, forced: true, pass: steps, allowed: []) } }
                guard emit(tokens) else { reason = .cancelled; break }
                if matcher.isFinished(state) { break }
                logits = try context.forward(tokens, logits: .last)
                continue
            }
            guard room >= 1 else { throw SchemaFailure("the context is full (\(context.contextLength) tokens) before the JSON value is complete") }
            let budget = options.maxTokens - generated - 1
            vocabulary.allowedTokens(matcher, state, budget: budget, into: &allowed)
            let complete = matcher.isComplete(state)
            if complete { allowed += tokenizer.endOfGeneration.sorted() }
            guard !allowed.isEmpty else {
                throw SchemaFailure("no token can continue the JSON value within max_tokens (\(options.maxTokens))")
            }
            var masked = [Float](repeating: -.infinity, count: logits.count)
            for id in allowed where Int(id) < masked.count { masked[Int(id)] = logits[Int(id)] }
            var next = sampler.sample(masked, history: history)
            if !masked[Int(next)].isFinite {
                // Rounding in the sampler's draw can land on a masked token: take the best allowed.
                next = allowed.max { masked[Int($0)] < masked[Int($1)] }!
            }
            if options.traceConstraint { trace.append(ConstraintStep(token: next, forced: false, pass: steps + 1, allowed: allowed)) }
            if complete && tokenizer.endOfGeneration.contains(next) { break }
            let bytes = tokenizer.bytes(of: next)
            state = matcher.step(state, bytes)
            precondition(!state.isDead, "an allowed token was refused by the schema recognizer")
            output += bytes
            history.append(next)
            generated += 1
            steps += 1
            guard emit([next]) else { reason = .cancelled; break }
            if matcher.isFinished(state) { break }
            logits = try context.forward([next], logits: .last)
        }
        let rest = stream.flush()
        if !rest.isEmpty { _ = onText(rest) }
        var result = GenerateResult(text: String(decoding: output, as: UTF8.self), promptTokens: ids.count, cachedTokens: 0,
                                    generatedTokens: generated, stopReason: reason, promptMs: t1 - t0,
                                    generateMs: monotonicMilliseconds() - t1)
        result.forcedTokens = forced
        result.modelSteps = steps
        result.trace = trace
        return result
    }
}

/// A constrained generation that could not complete its JSON value (the context filled up, or
/// the model's output could not be continued): the daemon's `schema_failed`.
public struct SchemaFailure: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
