import BitNet

/// What the daemon needs from a model: the two blocking session calls of `Engine`. Unit tests use
/// an in-memory double. Calls come from the daemon's single inference thread, one at a time.
public protocol InferenceBackend: AnyObject, Sendable {
    var modelName: String { get }
    func decide(prompt: String, labels: [String]) throws -> DecideResult
    func generate(prompt: String, options: GenerateOptions, onText: (String) -> Bool) throws -> GenerateResult
}

extension Engine: InferenceBackend {}
