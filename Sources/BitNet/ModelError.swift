import GGUF

/// Why a model cannot be used (its file parsed as GGUF, but the content does not fit an
/// architecture this engine runs), or why a request cannot be served.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// A request the engine refuses (empty prompt, context full, unknown label tokens, …).
public struct RequestError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
