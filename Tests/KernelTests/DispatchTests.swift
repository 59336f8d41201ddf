import CTernaryKernels
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Reads the CPU flags the kernel reports, to know which path the dispatcher must choose.
func cpuFlags() -> Set<String> {
    guard let f = fopen("/proc/cpuinfo", "r") else { return [] }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 8192)
    while fgets(&line, Int32(line.count), f) != nil {
        let s = String(cString: line)
        if s.hasPrefix("flags") || s.hasPrefix("Features") {
            return Set(s.split(separator: ":").last!.split(separator: " ").map { $0.trimmingCharacters() })
        }
    }
    return []
}

extension Substring {
    func trimmingCharacters() -> String {
        String(self.filter { !$0.isWhitespace })
    }
}

func pathName(_ p: tk_path) -> String { String(cString: tk_path_name(p)) }

@Suite struct DispatchTests {
    /// A silent fall-back to scalar must not pass as "SIMD == reference": the dispatcher has to
    /// pick the fastest path this CPU has.
    @Test func dispatcherChoosesTheFastestPathTheCPUHas() {
        let flags = cpuFlags()
        let best = pathName(tk_best_path())
        #if arch(x86_64)
        if flags.contains("avx512f") && flags.contains("avx512bw") {
            #expect(best == "avx512")
        } else if flags.contains("avx2") && flags.contains("fma") && flags.contains("f16c") {
            #expect(best == "avx2")
        } else {
            #expect(best == "scalar")
        }
        #elseif arch(arm64)
        // HWCAP, not /proc/cpuinfo: under qemu-user the latter describes the host CPU.
        let hasDotprod = (tk_hwcap() & UInt(1 << 20)) != 0  // HWCAP_ASIMDDP
        #expect(best == (hasDotprod ? "dotprod" : "neon"))
        _ = flags
        #endif
        print("kernel paths: best \(best); CPU features: \(String(cString: tk_cpu_features()))")
    }

    @Test func namesRoundTrip() {
        for i in 0..<Int(TK_PATH_COUNT.rawValue) {
            let p = tk_path(rawValue: UInt32(i))
            #expect(tk_path_from_name(tk_path_name(p)) == Int32(i))
        }
        #expect(tk_path_from_name("nonsense") == -1)
        #expect(tk_kernels_get(TK_PATH_SCALAR) != nil)
    }

    @Test func i2sEveryPathEqualsReferenceExactly() {
        var seed: UInt64 = 12345
        func rnd() -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed >> 33
        }
        let tested = (0..<Int(TK_PATH_COUNT.rawValue)).map { tk_path(rawValue: UInt32($0)) }.filter { tk_path_available($0) != 0 }
        let skipped = (0..<Int(TK_PATH_COUNT.rawValue)).map { tk_path(rawValue: UInt32($0)) }.filter { tk_path_available($0) == 0 }
        print("I2_S paths tested: \(tested.map(pathName)); not runnable here: \(skipped.map(pathName))")
        for K in [128, 256, 640, 2560, 6912] {
            for (M, nt) in [(7, 1), (33, 3), (64, 4), (5, 8)] {
                for mode in 0..<3 {
                    var w = [UInt8](repeating: 0, count: M * K / 4)
                    var q = [Int8](repeating: 0, count: nt * K)
                    for i in w.indices {
                        // Codes 0…2 only (3 never occurs in files).
                        var b: UInt8 = 0
                        for s in 0..<4 { b |= UInt8(mode == 1 ? 2 : Int(rnd() % 3)) << (2 * s) }
                        w[i] = b
                    }
                    for i in q.indices {
                        q[i] = mode == 0 ? Int8(truncatingIfNeeded: Int(rnd() % 256) - 128) : (i % 2 == 0 ? 127 : -128)
                    }
                    var ref = [Int32](repeating: 0, count: nt * M)
                    tk_i2s_i8_gemm_ref(w, Int64(K), 1, Int64(M), q, Int64(K), Int64(nt), &ref, Int64(M))
                    for p in tested {
                        let table = tk_kernels_get(p)!.pointee
                        var out = [Int32](repeating: 0, count: nt * M)
                        table.i2s_gemm!(w, Int64(K), 1, Int64(M), q, Int64(K), Int64(nt), &out, Int64(M))
                        #expect(out == ref, "path \(pathName(p)) K=\(K) M=\(M) nt=\(nt) mode=\(mode)")
                    }
                }
            }
        }
    }
}

@Suite struct AttentionScoreTests {
    /// Attention scores feed int8 re-quantization in the next layer, so every path must give the
    /// same bits as the reference (ternary_kernels.h, tk_attn_scores).
    @Test func everyPathGivesTheReferenceBits() {
        var seed: UInt64 = 99
        func rnd() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(seed >> 40) - (1 << 23)) / Float(1 << 22)
        }
        for D in [8, 13, 32, 64, 128] {
            let rows = 37
            let k = (0..<(rows * D)).map { _ in tk_f32_to_f16(rnd()) }
            let q = (0..<D).map { _ in tk_f16_to_f32(tk_f32_to_f16(rnd())) }
            let ref = (0..<rows).map { j in k.withUnsafeBufferPointer { tk_f16_dot8_ref($0.baseAddress! + j * D, q, Int64(D)) } }
            for i in 0..<Int(TK_PATH_COUNT.rawValue) {
                let p = tk_path(rawValue: UInt32(i))
                var out = [Float](repeating: .nan, count: rows)
                tk_attn_scores(k, Int64(D), Int64(rows), q, &out, p)
                #expect(out.map(\.bitPattern) == ref.map(\.bitPattern), "path \(pathName(p)) D=\(D)")
            }
        }
    }
}
