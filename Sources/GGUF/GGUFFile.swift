#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One tensor's description and where its bytes are in the mapping.
public struct GGUFTensorInfo: Sendable {
    public var name: String
    public var type: GGMLType
    /// Dimensions in ggml order: `dims[0]` is the contiguous (input) dimension.
    public var dims: [Int]
    /// Offset relative to the start of the data section.
    public var offset: Int
    /// True size in bytes (I2_S: packed codes + 32).
    public var byteCount: Int
    /// Absolute file offset of the tensor-info record (for error messages).
    public var infoOffset: Int

    public var elementCount: Int { dims.reduce(1, *) }
    /// Rows when viewed as a matrix: product of dims[1...].
    public var rows: Int { dims.dropFirst().reduce(1, *) }
    public var columns: Int { dims[0] }
}

/// A memory-mapped, validated GGUF file (spec bitnet-gguf.md §1.3).
///
/// The whole file is mapped read-only once and never copied; tensor data pointers point into the
/// mapping, which lives as long as this object. Every count, length and offset of the header is
/// checked against caps and the bytes remaining before it is used, with overflow-safe arithmetic.
/// A malformed file throws a `GGUFError` naming the byte offset; it never crashes the process.
public final class GGUFFile: @unchecked Sendable {
    public static let maxStringLength = 64 << 20
    public static let maxArrayCount = 64 << 20
    public static let maxTensorCount = 1 << 20
    public static let maxKVCount = 1 << 20
    public static let maxTensorNameLength = 63

    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let keys: [String]
    public let metadata: [String: GGUFValue]
    /// Absolute byte offset of each metadata record (its key), for error messages.
    public let keyOffsets: [String: Int]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataStart: Int
    public let fileSize: Int

    private let tensorIndex: [String: Int]
    private let base: UnsafeRawPointer
    private let mappedLength: Int

    /// Architectures whose files use the bitnet.cpp fork's type ids (36 = I2_S).
    public static let bitnetArchitectures: Set<String> = ["bitnet-b1.58", "bitnet-25", "bitnet"]

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw GGUFError(.io, path: path, offset: 0, "cannot open: \(Self.errnoText())")
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw GGUFError(.io, path: path, offset: 0, "cannot stat: \(Self.errnoText())")
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw GGUFError(.io, path: path, offset: 0, "not a regular file")
        }
        let size = Int(st.st_size)
        if size < 24 {
            throw GGUFError(.truncated, path: path, offset: size,
                            "file is \(size) bytes; a GGUF header needs at least 24")
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw GGUFError(.io, path: path, offset: 0, "cannot mmap \(size) bytes: \(Self.errnoText())")
        }
        let basePtr = UnsafeRawPointer(map)
        do {
            var parser = Parser(base: basePtr, size: size, path: path)
            let parsed = try parser.parse()
            self.base = basePtr
            self.mappedLength = size
            self.fileSize = size
            self.version = parsed.version
            self.keys = parsed.keys
            self.metadata = parsed.metadata
            self.keyOffsets = parsed.keyOffsets
            self.tensors = parsed.tensors
            self.alignment = parsed.alignment
            self.dataStart = parsed.dataStart
            var index: [String: Int] = [:]
            for (i, t) in parsed.tensors.enumerated() { index[t.name] = i }
            self.tensorIndex = index
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
    }

    public var architecture: String? { metadata["general.architecture"]?.string }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// Pointer to a tensor's first byte (inside the read-only mapping).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawPointer {
        base + dataStart + tensor.offset
    }

    /// The tensor's bytes as a buffer.
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: data(of: tensor), count: tensor.byteCount)
    }

    /// Advise the kernel about the access pattern of the whole mapping.
    public func adviseWillNeed() {
        madvise(UnsafeMutableRawPointer(mutating: base), mappedLength, MADV_WILLNEED)
    }

    static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}

// MARK: - Parsing

private struct Parsed {
    var version: UInt32
    var keys: [String]
    var metadata: [String: GGUFValue]
    var keyOffsets: [String: Int]
    var tensors: [GGUFTensorInfo]
    var alignment: Int
    var dataStart: Int
}

/// Bounds-checked cursor over the mapping. Fields are unaligned, so all loads use `loadUnaligned`.
private struct Parser {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var pos = 0

    init(base: UnsafeRawPointer, size: Int, path: String) {
        self.base = base
        self.size = size
        self.path = path
    }

    var remaining: Int { size - pos }

    func fail(_ kind: GGUFError.Kind, at offset: Int, _ subject: String? = nil, _ message: String) -> GGUFError {
        GGUFError(kind, path: path, offset: offset, subject: subject, message)
    }

    mutating func need(_ n: Int, _ what: String, _ subject: String? = nil) throws {
        if n < 0 || n > remaining {
            throw fail(.truncated, at: pos, subject,
                       "\(what) needs \(n) bytes but only \(remaining) remain (file truncated?)")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String, _ subject: String? = nil) throws -> T {
        try need(MemoryLayout<T>.size, what, subject)
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: T.self))
        pos += MemoryLayout<T>.size
        return v
    }

    mutating func readFloat32(_ what: String, _ subject: String?) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what, subject))
    }

    mutating func readFloat64(_ what: String, _ subject: String?) throws -> Double {
        Double(bitPattern: try read(UInt64.self, what, subject))
    }

    mutating func readString(_ what: String, _ subject: String? = nil) throws -> String {
        let start = pos
        let len64 = try read(UInt64.self, "\(what) length", subject)
        if len64 > UInt64(GGUFFile.maxStringLength) {
            throw fail(.stringTooLong, at: start, subject,
                       "\(what) length \(len64) exceeds the \(GGUFFile.maxStringLength)-byte limit")
        }
        let len = Int(len64)
        if len > remaining {
            throw fail(.stringTooLong, at: start, subject,
                       "\(what) length \(len) runs past the end of the file (\(remaining) bytes remain)")
        }
        let buf = UnsafeRawBufferPointer(start: base + pos, count: len)
        guard let s = String(validating: buf.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw fail(.invalidUTF8, at: start, subject, "\(what) is not valid UTF-8")
        }
        pos += len
        return s
    }

    mutating func parse() throws -> Parsed {
        let magic = try read(UInt32.self, "magic")
        if magic != 0x4655_4747 {
            throw fail(.badMagic, at: 0, nil, "not a GGUF file (magic \(hex(magic)), expected 'GGUF')")
        }
        let version = try read(UInt32.self, "version")
        if version & 0xFFFF == 0 && version != 0 {
            throw fail(.badVersion, at: 4, nil,
                       "version \(hex(version)) looks byte-swapped: big-endian GGUF is not supported")
        }
        if version != 2 && version != 3 {
            throw fail(.badVersion, at: 4, nil, "GGUF version \(version) is not supported (2 or 3)")
        }
        let nTensors64 = try read(UInt64.self, "tensor count")
        let nKV64 = try read(UInt64.self, "metadata count")
        // A KV record is at least 8 (key len) + 4 (type) + 1 bytes; a tensor info at least 8+4+8+4+8.
        if nKV64 > UInt64(GGUFFile.maxKVCount) || nKV64 > UInt64(remaining / 13) {
            throw fail(.countTooLarge, at: 16, nil,
                       "metadata count \(nKV64) is impossible for a \(size)-byte file")
        }
        if nTensors64 > UInt64(GGUFFile.maxTensorCount) || nTensors64 > UInt64(remaining / 32) {
            throw fail(.countTooLarge, at: 8, nil,
                       "tensor count \(nTensors64) is impossible for a \(size)-byte file")
        }

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        var keyOffsets: [String: Int] = [:]
        for _ in 0..<Int(nKV64) {
            let keyOffset = pos
            let key = try readString("metadata key")
            if metadata[key] != nil {
                throw fail(.duplicateKey, at: keyOffset, key, "duplicate metadata key '\(key)'")
            }
            let typeOffset = pos
            let rawType = try read(UInt32.self, "value type", key)
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw fail(.badValueType, at: typeOffset, key, "unknown metadata value type \(rawType)")
            }
            let value = try readValue(type, key: key, typeOffset: typeOffset)
            keys.append(key)
            metadata[key] = value
            keyOffsets[key] = keyOffset
        }

        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard case .uint32(let v) = a else {
                throw fail(.badAlignment, at: 24, "general.alignment", "general.alignment must be a u32")
            }
            if v < 8 || v > (1 << 20) || (v & (v - 1)) != 0 {
                throw fail(.badAlignment, at: 24, "general.alignment",
                           "general.alignment \(v) is not a power of two between 8 and 1 MiB")
            }
            alignment = Int(v)
        }
        let arch = metadata["general.architecture"]?.string
        let fileType = metadata["general.file_type"]?.integer
        let allowsForkTypes = arch.map { GGUFFile.bitnetArchitectures.contains($0) } ?? false
            || [38, 39, 40].contains(fileType ?? -1)

        var tensors: [GGUFTensorInfo] = []
        var names = Set<String>()
        for _ in 0..<Int(nTensors64) {
            let infoOffset = pos
            let name = try readString("tensor name")
            if name.utf8.count > GGUFFile.maxTensorNameLength || name.isEmpty {
                throw fail(.badTensorName, at: infoOffset, name,
                           "tensor name of \(name.utf8.count) bytes (must be 1...\(GGUFFile.maxTensorNameLength))")
            }
            if names.contains(name) {
                throw fail(.duplicateTensor, at: infoOffset, name, "duplicate tensor '\(name)'")
            }
            names.insert(name)
            let dimsOffset = pos
            let nDims = try read(UInt32.self, "dimension count", name)
            if nDims < 1 || nDims > 4 {
                throw fail(.badDimensions, at: dimsOffset, name, "\(nDims) dimensions (must be 1...4)")
            }
            var dims: [Int] = []
            var elements = 1
            for i in 0..<Int(nDims) {
                let dOffset = pos
                let d = try read(UInt64.self, "dimension", name)
                if d < 1 {
                    throw fail(.badDimensions, at: dOffset, name, "dimension \(i) is \(d) (must be ≥ 1)")
                }
                if d > UInt64(Int64.max) {
                    throw fail(.shapeOverflow, at: dOffset, name, "dimension \(i) = \(d) overflows")
                }
                let (e, o) = elements.multipliedReportingOverflow(by: Int(d))
                if o {
                    throw fail(.shapeOverflow, at: dOffset, name,
                               "element count overflows at dimension \(i) (\(d))")
                }
                elements = e
                dims.append(Int(d))
            }
            let typeOffset = pos
            let rawType = try read(UInt32.self, "tensor type", name)
            guard let type = GGMLType(rawValue: rawType), type != .i2_s || allowsForkTypes else {
                let hint = rawType == 36
                    ? " (id 36 is I2_S only in BitNet files; this file's architecture is '\(arch ?? "?")')"
                    : ""
                throw fail(.unknownType, at: typeOffset, name, "tensor type \(rawType) is not supported\(hint)")
            }
            if dims[0] % type.blockSize != 0 {
                throw fail(.badBlockMultiple, at: dimsOffset, name,
                           "\(type.name) row width \(dims[0]) is not a multiple of \(type.blockSize)")
            }
            guard let bytes = type.byteCount(dims: dims) else {
                throw fail(.shapeOverflow, at: dimsOffset, name, "byte size of \(dims) \(type.name) overflows")
            }
            let offOffset = pos
            let off = try read(UInt64.self, "tensor offset", name)
            if off > UInt64(Int.max) {
                throw fail(.tensorPastEnd, at: offOffset, name, "offset \(off) is past the end of the file")
            }
            if Int(off) % alignment != 0 {
                throw fail(.misalignedOffset, at: offOffset, name,
                           "data offset \(off) is not a multiple of the alignment \(alignment)")
            }
            tensors.append(GGUFTensorInfo(name: name, type: type, dims: dims, offset: Int(off),
                                          byteCount: bytes, infoOffset: infoOffset))
        }

        let (padded, o) = pos.addingReportingOverflow((alignment - pos % alignment) % alignment)
        // A vocabulary-only file (no tensors) may end right after its metadata, unpadded, as
        // llama.cpp writes and reads them.
        if o || (padded > size && !tensors.isEmpty) {
            throw fail(.truncated, at: pos, nil, "data section would start at \(padded), past the end (\(size))")
        }
        let dataStart = padded

        // Ranges: inside the file and not overlapping one another.
        var ranges: [(Int, Int, Int)] = [] // (start, end, index)
        for (i, t) in tensors.enumerated() {
            let (start, o1) = dataStart.addingReportingOverflow(t.offset)
            let (end, o2) = start.addingReportingOverflow(t.byteCount)
            if o1 || o2 || end > size {
                throw fail(.tensorPastEnd, at: t.infoOffset, t.name,
                           "data [\(o1 ? -1 : start), \(o2 ? -1 : end)) runs past the end of the file (\(size) bytes)")
            }
            ranges.append((start, end, i))
        }
        ranges.sort { $0.0 < $1.0 }
        for k in ranges.indices.dropFirst() where ranges[k].0 < ranges[k - 1].1 {
            let t = tensors[ranges[k].2]
            throw fail(.overlappingTensors, at: t.infoOffset, t.name,
                       "data overlaps tensor '\(tensors[ranges[k - 1].2].name)'")
        }
        return Parsed(version: version, keys: keys, metadata: metadata, keyOffsets: keyOffsets, tensors: tensors,
                      alignment: alignment, dataStart: dataStart)
    }

    mutating func readValue(_ type: GGUFValueType, key: String, typeOffset: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, "value", key))
        case .int8: return .int8(try read(Int8.self, "value", key))
        case .uint16: return .uint16(try read(UInt16.self, "value", key))
        case .int16: return .int16(try read(Int16.self, "value", key))
        case .uint32: return .uint32(try read(UInt32.self, "value", key))
        case .int32: return .int32(try read(Int32.self, "value", key))
        case .float32: return .float32(try readFloat32("value", key))
        case .bool:
            let at = pos
            let b = try read(UInt8.self, "value", key)
            if b > 1 { throw fail(.badMetadata, at: at, key, "bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case .string: return .string(try readString("string value", key))
        case .uint64: return .uint64(try read(UInt64.self, "value", key))
        case .int64: return .int64(try read(Int64.self, "value", key))
        case .float64: return .float64(try readFloat64("value", key))
        case .array:
            let elemOffset = pos
            let rawElem = try read(UInt32.self, "array element type", key)
            guard let elem = GGUFValueType(rawValue: rawElem) else {
                throw fail(.badValueType, at: elemOffset, key, "unknown array element type \(rawElem)")
            }
            if elem == .array {
                throw fail(.nestedArray, at: elemOffset, key, "nested arrays are not supported")
            }
            let countOffset = pos
            let count64 = try read(UInt64.self, "array count", key)
            let minSize = elem.scalarSize ?? 8
            if count64 > UInt64(GGUFFile.maxArrayCount) || count64 > UInt64(remaining / minSize) {
                throw fail(.countTooLarge, at: countOffset, key,
                           "array of \(count64) elements does not fit in the \(remaining) bytes left")
            }
            return .array(try readArray(elem, count: Int(count64), key: key))
        }
    }

    mutating func readScalars<T: FixedWidthInteger>(_: T.Type, _ count: Int, _ key: String) throws -> [T] {
        let n = count * MemoryLayout<T>.size
        try need(n, "array", key)
        let start = pos
        let out = [T](unsafeUninitializedCapacity: count) { buf, initialized in
            for i in 0..<count {
                buf[i] = T(littleEndian: base.loadUnaligned(fromByteOffset: start + i * MemoryLayout<T>.size, as: T.self))
            }
            initialized = count
        }
        pos += n
        return out
    }

    mutating func readArray(_ elem: GGUFValueType, count: Int, key: String) throws -> GGUFArray {
        switch elem {
        case .uint8: return .uint8(try readScalars(UInt8.self, count, key))
        case .int8: return .int8(try readScalars(Int8.self, count, key))
        case .uint16: return .uint16(try readScalars(UInt16.self, count, key))
        case .int16: return .int16(try readScalars(Int16.self, count, key))
        case .uint32: return .uint32(try readScalars(UInt32.self, count, key))
        case .int32: return .int32(try readScalars(Int32.self, count, key))
        case .uint64: return .uint64(try readScalars(UInt64.self, count, key))
        case .int64: return .int64(try readScalars(Int64.self, count, key))
        case .float32: return .float32(try readScalars(UInt32.self, count, key).map { Float(bitPattern: $0) })
        case .float64: return .float64(try readScalars(UInt64.self, count, key).map { Double(bitPattern: $0) })
        case .bool:
            let at = pos
            let raw = try readScalars(UInt8.self, count, key)
            if let bad = raw.firstIndex(where: { $0 > 1 }) {
                throw fail(.badMetadata, at: at + bad, key, "bool array element \(bad) is \(raw[bad])")
            }
            return .bool(raw.map { $0 == 1 })
        case .string:
            var out: [String] = []
            out.reserveCapacity(count)
            for _ in 0..<count { out.append(try readString("array string", key)) }
            return .string(out)
        case .array:
            throw fail(.nestedArray, at: pos, key, "nested arrays are not supported")
        }
    }

    func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
