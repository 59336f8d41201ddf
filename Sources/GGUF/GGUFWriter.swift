#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes GGUF v3 files: used by the tests, `bitnetd dev make-model`, `bench --make-2b4t` and
/// the model tools. Tensors are produced one at a time by a closure, so a 1.2 GB model is written
/// without holding it in memory. Layout follows spec §1.1: KVs, tensor infos, zero padding to the
/// alignment, then tensors back to back, each padded to the alignment.
public struct GGUFWriter {
    public struct TensorSpec {
        public var name: String
        public var type: GGMLType
        public var dims: [Int]
        public var byteCount: Int
        /// Fills exactly `byteCount` bytes.
        public var produce: (UnsafeMutableRawBufferPointer) -> Void
    }

    public private(set) var entries: [(String, GGUFValue)] = []
    public private(set) var tensors: [TensorSpec] = []
    public var alignment = 32

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = entries.firstIndex(where: { $0.0 == key }) {
            entries[i].1 = value
        } else {
            entries.append((key, value))
        }
    }

    public mutating func addTensor(_ name: String, type: GGMLType, dims: [Int],
                                   produce: @escaping (UnsafeMutableRawBufferPointer) -> Void) {
        guard let bytes = type.byteCount(dims: dims) else {
            preconditionFailure("invalid shape \(dims) for \(type.name) tensor \(name)")
        }
        tensors.append(TensorSpec(name: name, type: type, dims: dims, byteCount: bytes, produce: produce))
    }

    /// Adds a tensor from a byte array (must have the type's exact size).
    public mutating func addTensor(_ name: String, type: GGMLType, dims: [Int], bytes: [UInt8]) {
        addTensor(name, type: type, dims: dims) { buf in
            precondition(buf.count == bytes.count, "tensor \(name): \(bytes.count) bytes given, \(buf.count) expected")
            bytes.withUnsafeBytes { buf.copyMemory(from: $0) }
        }
    }

    /// The header bytes (magic through the padding before the data section) and the data offsets.
    public func header() -> (bytes: [UInt8], offsets: [Int]) {
        var out: [UInt8] = []
        out.append(contentsOf: [0x47, 0x47, 0x55, 0x46])
        append(UInt32(3), to: &out)
        append(UInt64(tensors.count), to: &out)
        append(UInt64(entries.count), to: &out)
        for (key, value) in entries {
            appendString(key, to: &out)
            append(value.type.rawValue, to: &out)
            appendValue(value, to: &out)
        }
        var offsets: [Int] = []
        var offset = 0
        for t in tensors {
            appendString(t.name, to: &out)
            append(UInt32(t.dims.count), to: &out)
            for d in t.dims { append(UInt64(d), to: &out) }
            append(t.type.rawValue, to: &out)
            append(UInt64(offset), to: &out)
            offsets.append(offset)
            offset += padded(t.byteCount)
        }
        out.append(contentsOf: [UInt8](repeating: 0, count: padded(out.count) - out.count))
        return (out, offsets)
    }

    func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Writes the file (replacing it). Calls `progress(done, total)` after each tensor.
    public func write(to path: String, progress: ((Int, Int) -> Void)? = nil) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 {
            throw GGUFError(.io, path: path, offset: 0, "cannot create: \(GGUFFile.errnoText())")
        }
        defer { close(fd) }
        let (head, _) = header()
        try writeAll(fd, head, path)
        for (i, t) in tensors.enumerated() {
            let total = padded(t.byteCount)
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 64)
            defer { buf.deallocate() }
            buf.initializeMemory(as: UInt8.self, repeating: 0)
            t.produce(UnsafeMutableRawBufferPointer(rebasing: buf[0..<t.byteCount]))
            try writeAll(fd, UnsafeRawBufferPointer(rebasing: buf[0..<total]), path)
            progress?(i + 1, tensors.count)
        }
    }

    /// The whole file in memory (small test models).
    public func bytes() -> [UInt8] {
        var (out, _) = header()
        for t in tensors {
            var buf = [UInt8](repeating: 0, count: padded(t.byteCount))
            buf.withUnsafeMutableBytes { t.produce(UnsafeMutableRawBufferPointer(rebasing: $0[0..<t.byteCount])) }
            out.append(contentsOf: buf)
        }
        return out
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, path) }
    }

    private func writeAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer, _ path: String) throws {
        var done = 0
        while done < buf.count {
            let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw GGUFError(.io, path: path, offset: done, "write failed: \(GGUFFile.errnoText())")
            }
            done += n
        }
    }
}

// MARK: - Encoding helpers (little-endian)

func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
    withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
}

func appendString(_ s: String, to out: inout [UInt8]) {
    append(UInt64(s.utf8.count), to: &out)
    out.append(contentsOf: s.utf8)
}

func appendValue(_ value: GGUFValue, to out: inout [UInt8]) {
    switch value {
    case .uint8(let v): append(v, to: &out)
    case .int8(let v): append(v, to: &out)
    case .uint16(let v): append(v, to: &out)
    case .int16(let v): append(v, to: &out)
    case .uint32(let v): append(v, to: &out)
    case .int32(let v): append(v, to: &out)
    case .float32(let v): append(v.bitPattern, to: &out)
    case .bool(let v): out.append(v ? 1 : 0)
    case .string(let s): appendString(s, to: &out)
    case .uint64(let v): append(v, to: &out)
    case .int64(let v): append(v, to: &out)
    case .float64(let v): append(v.bitPattern, to: &out)
    case .array(let a):
        append(a.elementType.rawValue, to: &out)
        append(UInt64(a.count), to: &out)
        switch a {
        case .uint8(let xs): out.append(contentsOf: xs)
        case .int8(let xs): for x in xs { append(x, to: &out) }
        case .uint16(let xs): for x in xs { append(x, to: &out) }
        case .int16(let xs): for x in xs { append(x, to: &out) }
        case .uint32(let xs): for x in xs { append(x, to: &out) }
        case .int32(let xs): for x in xs { append(x, to: &out) }
        case .float32(let xs): for x in xs { append(x.bitPattern, to: &out) }
        case .bool(let xs): for x in xs { out.append(x ? 1 : 0) }
        case .string(let xs): for x in xs { appendString(x, to: &out) }
        case .uint64(let xs): for x in xs { append(x, to: &out) }
        case .int64(let xs): for x in xs { append(x, to: &out) }
        case .float64(let xs): for x in xs { append(x.bitPattern, to: &out) }
        }
    }
}
