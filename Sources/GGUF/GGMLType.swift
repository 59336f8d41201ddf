/// Tensor element types this engine reads. Raw values are the ids stored in GGUF files
/// (spec bitnet-gguf.md §1.2, §3.1). Id 36 means I2_S only in BitNet files: mainline ggml reused
/// it for another type, so the reader accepts it only for BitNet architectures (`GGUFFile`).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0
    case f16 = 1
    case q8_0 = 8
    case q6_K = 14
    case bf16 = 30
    case tq1_0 = 34
    case tq2_0 = 35
    case i2_s = 36

    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q8_0: return "Q8_0"
        case .q6_K: return "Q6_K"
        case .bf16: return "BF16"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .i2_s: return "I2_S"
        }
    }

    /// Elements per block (I2_S: 128, the unit its rows must be a multiple of).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q8_0: return 32
        case .q6_K, .tq1_0, .tq2_0: return 256
        case .i2_s: return 128
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q8_0: return 34
        case .q6_K: return 210
        case .tq1_0: return 54
        case .tq2_0: return 66
        case .i2_s: return 32
        }
    }

    /// True for the ternary weight formats.
    public var isTernary: Bool { self == .i2_s || self == .tq1_0 || self == .tq2_0 }

    /// Bytes of one row of `width` elements (`width` a multiple of `blockSize`).
    public func rowBytes(_ width: Int) -> Int { width / blockSize * blockBytes }

    /// True byte size of a tensor with these dimensions, or nil on overflow or a row width that is
    /// not a multiple of the block size. I2_S: packed codes (ne0·rows/4) + 32 bytes (α + padding).
    public func byteCount(dims: [Int]) -> Int? {
        guard let first = dims.first, first > 0, first % blockSize == 0 else { return nil }
        var rows = 1
        for d in dims.dropFirst() {
            let (r, o) = rows.multipliedReportingOverflow(by: d)
            if o { return nil }
            rows = r
        }
        let (bytes, o) = rowBytes(first).multipliedReportingOverflow(by: rows)
        if o { return nil }
        if self == .i2_s {
            let (b, o2) = bytes.addingReportingOverflow(32)
            return o2 ? nil : b
        }
        return bytes
    }
}
