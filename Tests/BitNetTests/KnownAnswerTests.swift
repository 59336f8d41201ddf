import BitNet
import BitNetTools
import CTernaryKernels
import GGUF
import Testing

/// Worked examples from the spec pin the on-disk layouts: a writer ↔ reader round trip alone
/// cannot catch a layout that both sides misread the same way.
@Suite struct KnownAnswerTests {
    @Test func i2sByte0x92() {
        // Byte 0 of a block holds elements 0, 32, 64, 96 in bit pairs 7..6, 5..4, 3..2, 1..0.
        var block = [UInt8](repeating: 0x55, count: 32)  // 0x55 = codes 1,1,1,1 = all zeros
        block[0] = 0x92
        var y = [Float](repeating: 9, count: 128)
        tk_dequant_row_i2s(block, 2.0, &y, 128)
        #expect(y[0] == 2 && y[32] == 0 && y[64] == -2 && y[96] == 2)
        #expect(y.enumerated().allSatisfy { [0, 32, 64, 96].contains($0.offset) || $0.element == 0 })
    }

    @Test func tq2Byte0x86() {
        var block = [UInt8](repeating: 0x55, count: 66)
        block[0] = 0x86
        let d = tk_f32_to_f16(0.5)
        block[64] = UInt8(d & 0xFF)
        block[65] = UInt8(d >> 8)
        var y = [Float](repeating: 9, count: 256)
        tk_dequant_row_tq2_0(block, &y, 256)
        #expect(y[0] == 0.5 && y[32] == 0 && y[64] == -0.5 && y[96] == 0.5)
        #expect(y[1] == 0 && y[128] == 0)
    }

    @Test func tq1Bytes() {
        // qs[0] = 207 → trits (2,1,0,2,1) for elements 0, 32, 64, 96, 128;
        // qs[1] = 108 → (1,0,2,1,0) for elements 1, 33, 65, 97, 129; qs[2] = 255 → all 2.
        var block = [UInt8](repeating: 0, count: 54)
        let one = UInt8((121 * 256 + 242) / 243)  // trits (1,1,1,1,1): value 0 everywhere
        for i in 0..<48 { block[i] = one }
        for i in 48..<52 { block[i] = UInt8((40 * 3 * 256 + 242) / 243) }  // (1,1,1,1) → zeros
        block[0] = 207
        block[1] = 108
        block[2] = 255
        let d = tk_f32_to_f16(1.0)
        block[52] = UInt8(d & 0xFF)
        block[53] = UInt8(d >> 8)
        var y = [Float](repeating: 9, count: 256)
        tk_dequant_row_tq1_0(block, &y, 256)
        #expect([y[0], y[32], y[64], y[96], y[128]] == [1, 0, -1, 1, 0])
        #expect([y[1], y[33], y[65], y[97], y[129]] == [0, -1, 1, 0, -1])
        #expect([y[2], y[34], y[66], y[98], y[130]] == [1, 1, 1, 1, 1])
        #expect(y[3] == 0 && y[255] == 0)
    }

    @Test func int8ActivationExample() {
        // (0.5, −1, 0.25, 0.003) → s = 127, q = (64, −127, 32, 0) (63.5 rounds to even 64), Σ = −31.
        let x: [Float] = [0.5, -1, 0.25, 0.003]
        var q = [Int8](repeating: 0, count: 4)
        var sum: Int32 = 0
        let s = tk_quantize_row_i8_ref(x, &q, 4, &sum)
        #expect(s == 127)
        #expect(q == [64, -127, 32, 0])
        #expect(sum == -31)
        for path in KernelSet.availablePaths {
            let k = try! KernelSet(forced: KernelPath(rawValue: path)!)
            var q2 = [Int8](repeating: 0, count: 4)
            var sum2: Int32 = 0
            let s2 = k.table.pointee.quantize_i8!(x, &q2, 4, &sum2)
            #expect(s2 == 127 && q2 == q && sum2 == -31, "path \(path)")
        }
    }

    @Test func packersMatchTheDecoders() {
        var rng = SplitMixXoshiro(seed: 9)
        for type in [GGMLType.i2_s, .tq2_0, .tq1_0] {
            let n = 512
            let trits = (0..<n).map { _ in Int8(Int(rng.next() % 3) - 1) }
            var buf = [UInt8](repeating: 0, count: type.rowBytes(n))
            buf.withUnsafeMutableBytes { TernaryPacking.pack(trits, type: type, scale: 0.25, into: $0) }
            var y = [Float](repeating: 9, count: n)
            switch type {
            case .i2_s: tk_dequant_row_i2s(buf, 0.25, &y, Int64(n))
            case .tq2_0: tk_dequant_row_tq2_0(buf, &y, Int64(n))
            default: tk_dequant_row_tq1_0(buf, &y, Int64(n))
            }
            #expect(y == trits.map { Float($0) * 0.25 }, "\(type.name)")
        }
    }
}
