#if canImport(Glibc)
import Glibc
#endif
import BitNet
import GGUF

/// A fresh temporary directory, removed by `remove()`.
public struct TempDir: Sendable {
    public let path: String

    public init(_ prefix: String = "bitnetd-test") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() {
        _ = system("rm -rf '\(path)'")
    }
}

/// Writes bytes to a file (tests only; traps on failure).
public func writeBytes(_ bytes: [UInt8], to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    defer { close(fd) }
    var done = 0
    bytes.withUnsafeBytes { buf in
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            precondition(n > 0)
            done += n
        }
    }
}

public func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

/// Offset of the first occurrence of `needle` in `bytes`.
public func offset(of needle: [UInt8], in bytes: [UInt8], from: Int = 0) -> Int? {
    guard needle.count <= bytes.count else { return nil }
    var i = from
    while i + needle.count <= bytes.count {
        if bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle { return i }
        i += 1
    }
    return nil
}

public func offset(of s: String, in bytes: [UInt8], from: Int = 0) -> Int? {
    offset(of: Array(s.utf8), in: bytes, from: from)
}

/// Little-endian stores into a byte array.
public func store<T: FixedWidthInteger>(_ v: T, at off: Int, in bytes: inout [UInt8]) {
    withUnsafeBytes(of: v.littleEndian) { raw in
        for (i, b) in raw.enumerated() { bytes[off + i] = b }
    }
}

/// The small GGUF fixture for reader tests: a BitNet architecture, metadata of every scalar
/// type, string and integer arrays, and tensors of F32 and I2_S.
public func readerFixture() -> GGUFWriter {
    var w = GGUFWriter()
    w.set("general.architecture", .string("bitnet-b1.58"))
    w.set("general.name", .string("fixture"))
    w.set("test.u8", .uint8(7))
    w.set("test.i16", .int16(-3))
    w.set("test.f64", .float64(2.5))
    w.set("test.bool", .bool(true))
    w.set("test.strings", .array(.string(["a", "bc", "def"])))
    w.set("test.ints", .array(.int32([1, -2, 3])))
    w.addTensor("norm.weight", type: .f32, dims: [128]) { buf in
        let f = buf.bindMemory(to: Float.self)
        for i in 0..<128 { f[i] = Float(i) }
    }
    w.addTensor("blk.0.attn_q.weight", type: .i2_s, dims: [128, 4]) { buf in
        for i in 0..<128 { buf[i] = 0x92 }
        buf.storeBytes(of: Float(0.5), toByteOffset: 128, as: Float.self)
    }
    w.addTensor("blk.0.attn_k.weight", type: .i2_s, dims: [256, 2]) { buf in
        for i in 0..<128 { buf[i] = 0x55 }
        buf.storeBytes(of: Float(0.25), toByteOffset: 128, as: Float.self)
    }
    return w
}
