/// Why a GGUF file was rejected. Every error names the file, the byte offset where the problem
/// was found, and the key or tensor involved, so a user can tell a truncated download from a file
/// written for another engine.
public struct GGUFError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case io                    // open/stat/mmap failed
        case truncated             // a read ran past the end of the file
        case badMagic
        case badVersion
        case countTooLarge         // n_kv, n_tensors or an array count beyond limits / bytes left
        case stringTooLong         // string length beyond the cap or the bytes left
        case invalidUTF8
        case badValueType          // unknown metadata value type
        case nestedArray
        case duplicateKey
        case duplicateTensor
        case badTensorName
        case badDimensions         // n_dims not 1...4 or a dimension < 1
        case shapeOverflow         // element or byte count overflows
        case unknownType           // tensor type this engine does not read
        case badAlignment          // general.alignment not a power of two in 8...1 MiB
        case misalignedOffset
        case tensorPastEnd
        case overlappingTensors
        case badBlockMultiple      // row width not a multiple of the type's block (I2_S: 128)
        case badMetadata           // a key with the wrong type
    }

    public var kind: Kind
    public var path: String
    /// Absolute byte offset in the file where the offending field starts.
    public var offset: Int
    /// The key or tensor name involved, when there is one.
    public var subject: String?
    public var message: String

    public init(_ kind: Kind, path: String, offset: Int, subject: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.offset = offset
        self.subject = subject
        self.message = message
    }

    public var description: String {
        var s = "\(path): byte \(offset)"
        if let subject { s += " (\(subject))" }
        return s + ": " + message
    }
}
