import BitNet
import GGUF

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
