import GGUF
import Testing
import TestKit

/// The reader must reject every class of corrupt file with the right error kind and the byte
/// offset of the offending field, and never crash (spec §1.3, STYLE guideline 5).
@Suite struct GGUFReaderTests {
    let original: [UInt8] = readerFixture().bytes()

    func load(_ bytes: [UInt8]) throws -> GGUFFile {
        let dir = TempDir("gguf")
        defer { dir.remove() }
        let path = dir.file("m.gguf")
        writeBytes(bytes, to: path)
        return try GGUFFile(path: path)
    }

    func expectError(_ bytes: [UInt8], _ kind: GGUFError.Kind, at expected: Int,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try load(bytes)
            Issue.record("expected \(kind) at \(expected), but the file loaded", sourceLocation: sourceLocation)
        } catch let e as GGUFError {
            #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
            #expect(e.offset == expected, "\(e)", sourceLocation: sourceLocation)
            #expect(e.description.contains("m.gguf"), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    /// Offset of a key's string bytes (its u64 length is 8 bytes before).
    func key(_ k: String) -> Int { offset(of: k, in: original)! }
    /// Offset of a tensor name's bytes in its tensor-info record.
    func tensorName(_ n: String) -> Int {
        let first = offset(of: n, in: original)!
        // Skip an occurrence inside metadata strings, if any: tensor infos come after the KVs.
        return offset(of: n, in: original, from: first) ?? first
    }

    @Test func unmodifiedFixtureLoads() throws {
        let f = try load(original)
        #expect(f.version == 3)
        #expect(f.architecture == "bitnet-b1.58")
        #expect(f.metadata["test.u8"] == .uint8(7))
        #expect(f.metadata["test.i16"] == .int16(-3))
        #expect(f.metadata["test.f64"] == .float64(2.5))
        #expect(f.metadata["test.bool"] == .bool(true))
        #expect(f.metadata["test.strings"] == .array(.string(["a", "bc", "def"])))
        #expect(f.metadata["test.ints"] == .array(.int32([1, -2, 3])))
        #expect(f.tensors.map(\.name) == ["norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"])
        let q = try #require(f.tensor(named: "blk.0.attn_q.weight"))
        #expect(q.type == .i2_s && q.dims == [128, 4])
        #expect(q.byteCount == 128 * 4 / 4 + 32)
        #expect(f.dataStart % 32 == 0)
        let bytes = f.bytes(of: q)
        #expect(bytes[0] == 0x92)
        #expect(bytes.loadUnaligned(fromByteOffset: 128, as: Float.self) == 0.5)
        let norm = try #require(f.tensor(named: "norm.weight"))
        #expect(f.bytes(of: norm).loadUnaligned(fromByteOffset: 4 * 5, as: Float.self) == 5)
    }

    @Test func truncatedHeader() {
        expectError(Array(original[0..<20]), .truncated, at: 20)
    }

    @Test func truncatedInsideTensorInfos() {
        let n = tensorName("norm.weight")
        // Cut right after the name: the dimension count cannot be read.
        expectError(Array(original[0..<(n + 11 + 2)]), .truncated, at: n + 11)
    }

    @Test func badMagic() {
        var b = original
        b[0] = 0x47; b[1] = 0x47; b[2] = 0x4D; b[3] = 0x4C  // "GGML"
        expectError(b, .badMagic, at: 0)
    }

    @Test func badVersion() {
        var b = original
        store(UInt32(1), at: 4, in: &b)
        expectError(b, .badVersion, at: 4)
        store(UInt32(0x0300_0000), at: 4, in: &b)  // big-endian file
        expectError(b, .badVersion, at: 4)
    }

    @Test func hugeCounts() {
        var b = original
        store(UInt64(1) << 40, at: 16, in: &b)
        expectError(b, .countTooLarge, at: 16)
        b = original
        store(UInt64.max, at: 8, in: &b)
        expectError(b, .countTooLarge, at: 8)
        b = original
        let k = key("test.strings")
        store(UInt64(1) << 33, at: k + 12 + 4 + 4, in: &b)
        expectError(b, .countTooLarge, at: k + 20)
    }

    @Test func stringPastEnd() {
        var b = original
        let k = key("test.u8")
        store(UInt64(1_000_000), at: k - 8, in: &b)
        expectError(b, .stringTooLong, at: k - 8)
        store(UInt64(1) << 40, at: k - 8, in: &b)
        expectError(b, .stringTooLong, at: k - 8)
    }

    @Test func invalidUTF8Key() {
        var b = original
        let k = key("test.u8")
        b[k + 1] = 0xFF
        expectError(b, .invalidUTF8, at: k - 8)
    }

    @Test func nestedArray() {
        var b = original
        let k = key("test.ints")
        store(UInt32(9), at: k + 9 + 4, in: &b)
        expectError(b, .nestedArray, at: k + 13)
    }

    @Test func unknownValueType() {
        var b = original
        let k = key("test.u8")
        store(UInt32(99), at: k + 7, in: &b)
        expectError(b, .badValueType, at: k + 7)
    }

    @Test func unknownTensorType() {
        var b = original
        let n = tensorName("norm.weight")
        store(UInt32(99), at: n + 11 + 4 + 8, in: &b)
        expectError(b, .unknownType, at: n + 23)
    }

    @Test func i2sOnlyForBitNetArchitectures() {
        var b = original
        let k = key("bitnet-b1.58")
        for (i, c) in "qwen2x-b1.58".utf8.enumerated() { b[k + i] = c }
        let n = tensorName("blk.0.attn_q.weight")
        expectError(b, .unknownType, at: n + 19 + 4 + 16)
    }

    @Test func misalignedOffset() {
        var b = original
        let n = tensorName("norm.weight")
        store(UInt64(4), at: n + 27, in: &b)
        expectError(b, .misalignedOffset, at: n + 27)
    }

    @Test func tensorPastEnd() {
        var b = original
        let n = tensorName("norm.weight")
        store(UInt64(1 << 20), at: n + 27, in: &b)
        expectError(b, .tensorPastEnd, at: n - 8)
    }

    @Test func overlappingTensors() throws {
        var b = original
        let q = tensorName("blk.0.attn_q.weight")
        let k = tensorName("blk.0.attn_k.weight")
        let qOff = b[(q + 19 + 4 + 16 + 4)..<(q + 19 + 4 + 16 + 12)]
        for (i, v) in qOff.enumerated() { b[k + 19 + 4 + 16 + 4 + i] = v }
        expectError(b, .overlappingTensors, at: max(q, k) - 8)
    }

    @Test func duplicateKey() {
        var b = original
        let k = key("test.f64")
        for (i, c) in "test.i16".utf8.enumerated() { b[k + i] = c }
        expectError(b, .duplicateKey, at: k - 8)
    }

    @Test func duplicateTensor() {
        var b = original
        let k = tensorName("blk.0.attn_k.weight")
        for (i, c) in "blk.0.attn_q.weight".utf8.enumerated() { b[k + i] = c }
        expectError(b, .duplicateTensor, at: k - 8)
    }

    @Test func badDimensions() {
        var b = original
        let n = tensorName("norm.weight")
        store(UInt32(5), at: n + 11, in: &b)
        expectError(b, .badDimensions, at: n + 11)
        b = original
        store(UInt64(0), at: n + 15, in: &b)
        expectError(b, .badDimensions, at: n + 15)
    }

    @Test func shapeOverflow() {
        var b = original
        let q = tensorName("blk.0.attn_q.weight")
        store(UInt64(1) << 62, at: q + 19 + 4 + 8, in: &b)
        expectError(b, .shapeOverflow, at: q + 31)
    }

    @Test func i2sRowNotMultipleOf128() {
        var b = original
        let q = tensorName("blk.0.attn_q.weight")
        store(UInt64(100), at: q + 19 + 4, in: &b)
        expectError(b, .badBlockMultiple, at: q + 19)
    }

    @Test func badAlignment() {
        var w = readerFixture()
        w.set("general.alignment", .uint32(24))
        expectError(w.bytes(), .badAlignment, at: 24)
    }

    @Test func emptyFileIsTruncated() {
        expectError([], .truncated, at: 0)
    }

    @Test func writerRoundTripKeepsOrderAndPadding() throws {
        var w = readerFixture()
        w.alignment = 64
        w.set("general.alignment", .uint32(64))
        let f = try load(w.bytes())
        #expect(f.alignment == 64)
        #expect(f.dataStart % 64 == 0)
        #expect(f.tensors.allSatisfy { $0.offset % 64 == 0 })
        #expect(f.keys.first == "general.architecture")
    }
}
