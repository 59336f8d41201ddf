import GGUF

/// Why a model cannot be used (its file parsed as GGUF, but the content does not fit an
/// architecture this engine runs), or why a request cannot be served.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    /// Absolute byte offset in the file of the metadata record or tensor involved, when there is one.
    public var offset: Int?
    /// The metadata key or tensor name involved, when there is one.
    public var subject: String?

    public init(path: String, offset: Int? = nil, subject: String? = nil, _ message: String) {
        self.path = path
        self.offset = offset
        self.subject = subject
        self.message = message
    }

    /// `PATH: byte N (subject): message`, like the GGUF reader's errors, when the offset is known.
    public var description: String {
        var s = path
        if let offset { s += (s.isEmpty ? "" : ": ") + "byte \(offset)" }
        if let subject, offset != nil { s += " (\(subject))" }
        return s.isEmpty ? message : s + ": " + message
    }
}

/// A request the engine refuses (empty prompt, context full, unknown label tokens, …).
public struct RequestError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
