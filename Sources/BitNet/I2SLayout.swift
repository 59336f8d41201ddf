/// The two I2_S byte layouts found in files (spec §3.2, model-families §11). The published files
/// and every x86 conversion use 128-value blocks of 32 bytes (byte `32b + j` holds values
/// `128b + j + 32g`, g = 0…3, high bits first); bitnet.cpp's ARM builds since November 2025 write
/// 64-value blocks of 16 bytes (byte `16b + j` holds `64b + j + 16g`). Nothing in a file says
/// which: `model.i2s_block` / `--i2s-block` choose, 128 by default. The kernels read 128-value
/// blocks, so a 64-block file is repacked once at load into an anonymous copy.
public enum I2SLayout {
    /// For each position of a 128-value block in the 128/32 layout (output byte j, field g):
    /// the source byte (0…31 within two 64/16 blocks) and the source field.
    static let fromBlock64: [(byte: Int, shift: Int)] = (0..<128).map { slot in
        let j = slot / 4, g = slot % 4
        let e = 32 * g + j            // the value this field of output byte j holds
        let half = e / 64, r = e % 64
        return (16 * half + r % 16, 6 - 2 * (r / 16))
    }

    /// Repacks `byteCount` bytes of 64/16 codes (a multiple of 32) into the 128/32 layout.
    public static func repack64To128(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, byteCount: Int) {
        let s = src.assumingMemoryBound(to: UInt8.self), d = dst.assumingMemoryBound(to: UInt8.self)
        let table = fromBlock64
        table.withUnsafeBufferPointer { t in
            var block = 0
            while block < byteCount {
                let sb = s + block, db = d + block
                for j in 0..<32 {
                    var out: UInt8 = 0
                    for g in 0..<4 {
                        let (byte, shift) = t[4 * j + g]
                        out |= ((sb[byte] >> UInt8(shift)) & 3) << UInt8(6 - 2 * g)
                    }
                    db[j] = out
                }
                block += 32
            }
        }
    }

    /// The inverse: 128/32 codes into the 64/16 layout (`dev convert-i2s --block 64`).
    public static func repack128To64(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, byteCount: Int) {
        let s = src.assumingMemoryBound(to: UInt8.self), d = dst.assumingMemoryBound(to: UInt8.self)
        var block = 0
        while block < byteCount {
            let sb = s + block, db = d + block
            for half in 0..<2 {
                for j in 0..<16 {
                    var out: UInt8 = 0
                    for g in 0..<4 {
                        let e = 64 * half + 16 * g + j     // the value this field of the output holds
                        let code = (sb[e % 32] >> UInt8(6 - 2 * (e / 32))) & 3
                        out |= code << UInt8(6 - 2 * g)
                    }
                    db[16 * half + j] = out
                }
            }
            block += 32
        }
    }

    /// Packs one row of trits in the 64/16 layout (the generator's ARM-converted files).
    public static func pack64(_ t: [Int8], into out: UnsafeMutableRawBufferPointer) {
        for b in 0..<(t.count / 64) {
            for j in 0..<16 {
                var byte: UInt8 = 0
                for g in 0..<4 { byte |= UInt8(Int(t[64 * b + 16 * g + j]) + 1) << UInt8(6 - 2 * g) }
                out[16 * b + j] = byte
            }
        }
    }
}

/// Owns repacked tensor copies; frees them when the model (or a failed load) lets go.
final class RepackedTensors: @unchecked Sendable {
    private var pointers: [UnsafeMutableRawPointer] = []
    private(set) var bytes = 0

    func allocate(_ n: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        pointers.append(p)
        bytes += n
        return p
    }

    deinit { for p in pointers { p.deallocate() } }
}
