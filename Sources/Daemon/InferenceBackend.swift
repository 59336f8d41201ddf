import BitNet

/// What the daemon needs from a model: the two blocking session calls of `Engine`. Unit tests use
/// an in-memory double. Calls come from the daemon's single inference thread, one at a time.
public protocol InferenceBackend: AnyObject, Sendable {
    var modelName: String { get }
    /// `cacheKey` (the route name) selects the engine's prefix-cache slot, so a route's constant
    /// prompt prefix is computed once.
    func decide(prompt: String, labels: [String], cacheKey: String) throws -> DecideResult
    /// Several decisions of one route together; each result as `decide` would give it alone.
    func decide(batch: [Engine.DecideRequest], cacheKey: String) -> [Result<DecideResult, Error>]
    func generate(prompt: String, options: GenerateOptions, onText: (String) -> Bool) throws -> GenerateResult
    /// Drops every cached prompt prefix (after a config reload). Called on the inference thread.
    func invalidatePrefixCache()
}

extension InferenceBackend {
    public func invalidatePrefixCache() {}
    public func decide(batch: [Engine.DecideRequest], cacheKey: String) -> [Result<DecideResult, Error>] {
        batch.map { r in Result { try decide(prompt: r.prompt, labels: r.labels, cacheKey: cacheKey) } }
    }
}

extension Engine: InferenceBackend {}
