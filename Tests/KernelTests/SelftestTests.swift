import CTernaryKernels
import Testing

/// `tk_selftest` (behind `bitnetd selftest`): every available path passes, and a path with a wrong
/// kernel fails with that kernel named — the check can fail.
@Suite struct SelftestTests {
    @Test func everyAvailablePathPasses() {
        for i in 0..<Int(TK_PATH_COUNT.rawValue) {
            guard let table = tk_kernels_get(tk_path(rawValue: UInt32(i))) else { continue }
            var cases: Int32 = 0
            var msg = [CChar](repeating: 0, count: 1024)
            let failures = tk_selftest(table, &cases, &msg, msg.count)
            #expect(failures == 0 && cases >= 20, "\(String(cString: table.pointee.name)): \(failures) failures")
        }
    }

    @Test func aWrongKernelIsCaught() {
        var broken = tk_kernels_get(TK_PATH_SCALAR)!.pointee
        // An I2_S gemm that is off by one in every output.
        broken.i2s_gemm = { w, K, r0, r1, q, ldq, nt, out, ldo in
            tk_i2s_i8_gemm_ref(w, K, r0, r1, q, ldq, nt, out, ldo)
            for t in 0..<Int(nt) { for m in Int(r0)..<Int(r1) { out![t * Int(ldo) + m] &+= 1 } }
        }
        // A quantizer whose scale is a hair off.
        broken.quantize_i8 = { x, q, n, sum in tk_quantize_row_i8_ref(x, q, n, sum).nextUp }
        var cases: Int32 = 0
        var msg = [CChar](repeating: 0, count: 1024)
        let failures = tk_selftest(&broken, &cases, &msg, msg.count)
        let text = String(cString: msg)
        #expect(failures > 0 && text.contains("I2_S") && text.contains("quantize_i8"), "\(failures): \(text)")
    }
}
