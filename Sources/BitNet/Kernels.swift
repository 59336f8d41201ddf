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
