#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernaryKernels
import GGUF

/// The kernel path in use: the traits table of `CTernaryKernels` for one ISA.
public struct KernelSet: @unchecked Sendable {
    public let table: UnsafePointer<tk_kernels>
    public var name: String { String(cString: table.pointee.name) }

    /// Paths this CPU can run, fastest last.
    public static var availablePaths: [String] {
        (0..<Int(TK_PATH_COUNT.rawValue)).compactMap { i in
            let p = tk_path(rawValue: UInt32(i))
            return tk_path_available(p) != 0 ? String(cString: tk_path_name(p)) : nil
        }
    }

    public static var cpuFeatures: String { String(cString: tk_cpu_features()) }

    /// `forced` names a path; nil picks the fastest. An unavailable forced path is an error, not
    /// a silent fallback.
    public init(forced: KernelPath? = nil) throws {
        if let want = forced {
            let id = tk_path_from_name(want.rawValue)
            precondition(id >= 0, "KernelPath and tk_path_from_name disagree on '\(want.rawValue)'")
            guard let t = tk_kernels_get(tk_path(rawValue: UInt32(id))) else {
                throw RequestError("kernel path '\(want.rawValue)' is not available on this CPU (available: \(Self.availablePaths.joined(separator: ", ")); CPU features: \(Self.cpuFeatures))")
            }
            table = t
        } else {
            table = tk_kernels_get(tk_best_path())
        }
    }
}

extension KernelSet {
    /// `tk_selftest` on one path: every kernel against the scalar references on generated data.
    /// nil when the path is not available on this CPU.
    public static func selftest(_ path: KernelPath) -> (pass: Bool, cases: Int, failed: Int, failures: String)? {
        let id = tk_path_from_name(path.rawValue)
        guard id >= 0, let table = tk_kernels_get(tk_path(rawValue: UInt32(id))) else { return nil }
        var cases: Int32 = 0
        var msg = [CChar](repeating: 0, count: 4096)
        let failed = tk_selftest(table, &cases, &msg, msg.count)
        let detail = String(decoding: msg.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Test hook (never set in production): make this path's self-test fail, so the daemon's
        // fallback and refusal can be tested on a CPU whose kernels are right.
        if let broken = getenv("BITNETD_TEST_FAIL_SELFTEST"), String(cString: broken) == path.rawValue {
            return (false, Int(cases), 1, "failure forced by BITNETD_TEST_FAIL_SELFTEST")
        }
        return (failed == 0, Int(cases), Int(failed), detail)
    }

    /// The kernel path to run: `forced` (an error when its cases fail), else the fastest whose
    /// cases pass — the ones that failed are returned so the caller can report them.
    public static func checkedPath(forced: KernelPath?) throws -> (path: KernelPath, failed: [String]) {
        if let forced {
            guard let r = selftest(forced) else {
                throw RequestError("kernel path '\(forced.rawValue)' is not available on this CPU (available: \(availablePaths.joined(separator: ", ")))")
            }
            guard r.pass else { throw RequestError("kernel path '\(forced.rawValue)' fails its self-test on this CPU: \(r.failures)") }
            return (forced, [])
        }
        var failed: [String] = []
        for name in availablePaths.reversed() {
            guard let p = KernelPath(rawValue: name), let r = selftest(p) else { continue }
            if r.pass { return (p, failed) }
            failed.append("\(name) (\(r.failures))")
        }
        throw RequestError("no kernel path passes its self-test on this CPU: \(failed.joined(separator: "; "))")
    }

    /// The kernels of one weight type on this path (`tk_type_traits`: block size and bytes,
    /// activation type, gemm, row dequantization), or nil for a type the kernels do not know.
    public func traits(_ type: GGMLType) -> tk_type_traits? {
        tk_type_traits_get(table, type.rawValue)?.pointee
    }
}

/// Rounds to the nearest F16 value (round to nearest even), back in f32.
@inline(__always) func roundF16(_ x: Float) -> Float {
    tk_f16_to_f32(tk_f32_to_f16(x))
}
