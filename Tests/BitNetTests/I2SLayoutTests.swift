import BitNet
import BitNetTools
import GGUF
import Testing

/// The two I2_S block layouts (128/32 published, 64/16 ARM): exact repacking both ways.
@Suite struct I2SLayoutTests {
    @Test func repackingIsExactBothWays() {
        var rng = SplitMixXoshiro(seed: 7)
        let n = 128 * 40
        let trits = (0..<n).map { _ in Int8(Int(rng.next() % 3) - 1) }
        var published = [UInt8](repeating: 0, count: n / 4)
        var arm = [UInt8](repeating: 0, count: n / 4)
        published.withUnsafeMutableBytes { TernaryPacking.pack(trits, type: .i2_s, scale: 1, into: $0) }
        arm.withUnsafeMutableBytes { I2SLayout.pack64(trits, into: $0) }
        #expect(published != arm, "the layouts differ")
        var back = [UInt8](repeating: 0, count: n / 4)
        arm.withUnsafeBytes { a in back.withUnsafeMutableBytes { I2SLayout.repack64To128(a.baseAddress!, $0.baseAddress!, byteCount: n / 4) } }
        #expect(back == published)
        var forth = [UInt8](repeating: 0, count: n / 4)
        published.withUnsafeBytes { p in forth.withUnsafeMutableBytes { I2SLayout.repack128To64(p.baseAddress!, $0.baseAddress!, byteCount: n / 4) } }
        #expect(forth == arm)
        // The spec's worked example: values 0, 16, 32, 48 = (+1, 0, −1, +1) → byte 0 = 0x92 in 64/16.
        var ex = [Int8](repeating: 0, count: 64)
        (ex[0], ex[16], ex[32], ex[48]) = (1, 0, -1, 1)
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes { I2SLayout.pack64(ex, into: $0) }
        #expect(b[0] == 0x92)
    }
}
