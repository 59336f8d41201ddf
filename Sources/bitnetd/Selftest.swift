import ArgumentParser
import BitNet
import BitNetTools
import Glibc

/// `bitnetd selftest`: are this board's kernels right? Every kernel path the CPU runs against the
/// scalar references on generated data (integer kernels bit-exact, float ones within 1e-5 of the
/// sum of |w·x|), then a tiny generated model's logits against logits the independent NumPy
/// reference computed for it (stored below). qemu proves the integers of the ARM kernels in CI;
/// this proves them on the board, with its compiler, libc and CPU.
struct Selftest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the kernels and a tiny model on this CPU against references (a few seconds).",
        discussion: "One line per kernel path available on this CPU, then the model check. Exit status: 0 all pass, 1 otherwise.")

    @Flag(help: "Print JSON: {schema, cpu, paths[{name, pass, cases, failures}], model{pass, max_abs_diff}}.")
    var json = false

    @Option(help: "Check only this kernel path (scalar, avx2, avx512, neon, dotprod).")
    var kernel: KernelPath?

    /// The tiny model: `dev make-model --layers 2 --embd 128 --heads 4 --kv-heads 2 --ff 256 --vocab 300 --seed 42`
    /// (ModelFactory is deterministic), the token ids below, and the last position's logits from
    /// `tools/reference/bitnet_ref.py logits` (f32 bit patterns).
    static let modelIDs: [Int32] = [290, 274, 32, 100, 111, 263]
    static let referenceLogits: [UInt32] = [
        0x3F81F85A, 0x40B96C44, 0x40649DAC, 0x3F8AE71F, 0xBF4064D9, 0xC09CB39E, 0xBEC56F6E, 0x40956B5D, 0x40A4646A, 0x3E095A96,
        0xBFFF7677, 0x3E942AD8, 0x407E0583, 0x401AD15C, 0x40731016, 0x4060FA46, 0x41250270, 0x40888AC9, 0xBF749833, 0x4039C8CA,
        0xBF2125DC, 0xBF05E048, 0xC0AF5E81, 0xBF2CCC20, 0x3FF2EA37, 0x3F8B1EB6, 0xC056F92E, 0xC0035290, 0xBFB3EE7E, 0xC0CCE59F,
        0x40D58716, 0xC082965B, 0x409ECAB3, 0x402D2722, 0x404BBB1E, 0x3EB67002, 0x408B83A6, 0xC04D734C, 0x40840CE8, 0x40C72D37,
        0x3F9FD3A9, 0x40EBAAB0, 0x4078B688, 0xC0D5585A, 0xBF05121E, 0xBF0C6547, 0x40C4E51C, 0x40641743, 0x3FB63788, 0x4088E3DD,
        0xBF79F238, 0x3F7A9B00, 0x3FB7856A, 0x3F4AADE0, 0xC083BD0E, 0x3EE1B662, 0x40C4A575, 0x40B9195E, 0xBFFA482A, 0x409699C6,
        0xBFECD875, 0x3EE380C7, 0x40473AE4, 0xC056D54F, 0x3FA461A7, 0x3F00468E, 0xC0B1B424, 0xC0BB52FD, 0xC0BD8B17, 0xBF972A2A,
        0x3D659D80, 0xBFB7672C, 0x40ECE9CF, 0x3F728A1A, 0x40DCCFB0, 0x401AFA19, 0xBFEBBB7A, 0x4011F69C, 0xC0E04402, 0xBFF7A119,
        0xC0AA4FDA, 0x3FF91AC6, 0x3F3A4763, 0x3F60E34E, 0x3FC51E51, 0xC07DCA10, 0x40AD2ACE, 0x3FDB5676, 0xC0D29251, 0xC08EC7B6,
        0xC050013C, 0xC08193C7, 0x3D97B9F6, 0x3F96EE66, 0xC0B09973, 0xC0AA121A, 0xC010A3AB, 0x40CE095E, 0xC1074480, 0x3FC2BBBA,
        0x40066AAE, 0xC0309DA2, 0xC02BD384, 0x41199D69, 0x3FBF997B, 0x406B1013, 0x40823B04, 0x408D13F4, 0x40D69D78, 0xC0723474,
        0x407B3598, 0x3FFB5131, 0xC12BF596, 0xBFB89AD3, 0xC03BE3AC, 0x404DCBCE, 0x407E2CCE, 0x40C97177, 0x40B3C345, 0xC0452564,
        0x408E9252, 0xBED30E28, 0x3FA843B7, 0xC0100150, 0xC0C4A4E7, 0x40D65764, 0xC094D985, 0xC0D754B4, 0xC00113F0, 0xC0066D7C,
        0x3E82BAA8, 0x40B4357E, 0xBD941B70, 0x3D4BDB10, 0xC03799CF, 0x3EEEBFE2, 0x4012FF3E, 0x4080F483, 0xC11A18F1, 0xC0DDE42A,
        0xC0FDA9F9, 0x3F0307DA, 0xC0BC0FBA, 0xC074E913, 0x40BB1607, 0x40B3694C, 0xBE2D99AE, 0xC0001288, 0x411CB9B4, 0xBEBDE998,
        0x3F25FFBD, 0xC0A05AD2, 0x3FCCF61B, 0xBF597676, 0xC01BCEEB, 0xC0144DD4, 0x3EAF58FC, 0x402DD0E0, 0xBE35FCC0, 0xC057AAD6,
        0x3FAB22FD, 0x3FB2B366, 0xC0D01C70, 0xC02AB41E, 0x3F4FA418, 0x406AA075, 0x403C72EC, 0xC0A3CBED, 0x4091A85A, 0xC006668A,
        0x400373DE, 0xC071171C, 0xC01EBCB3, 0x408CD847, 0x3E862022, 0x3F2269F3, 0xBF0C00CA, 0xC0BDAF52, 0xC03C7A00, 0xC12DB26E,
        0x3F554F17, 0x404CF289, 0xC0909E94, 0xBFC056F0, 0x3FC03115, 0x40D7B69E, 0x3F54056F, 0xC0B963CA, 0x4049C173, 0xC0754068,
        0x4005052A, 0xBE861C48, 0x408FE234, 0xBF6064D6, 0xBFE17AF9, 0x413D4E44, 0xBE8E09F2, 0xBFAF6BA8, 0xC0F72C1B, 0x40CE1F24,
        0xC047C3C4, 0x40C686CE, 0xC0570E4C, 0x40A3E930, 0xC0F41B9D, 0x408F4E86, 0xC0308416, 0xC0F288E5, 0xBEFFEA04, 0xC0640EAC,
        0xBF2C66B4, 0xC0406205, 0x4055C546, 0xC06800BB, 0x40A9D205, 0xC04339EC, 0xC03B8D95, 0x409852DE, 0x40E9A2AE, 0xBFBCC221,
        0xC03F4591, 0xC03F00CA, 0x40571FE6, 0x409EFBC9, 0x3F902EA8, 0xC0B5087A, 0xBE42B046, 0xC076C95B, 0x407ED5C2, 0xC0052242,
        0x4007F83F, 0x408D3EB8, 0xBFF8674E, 0xBFDF71AA, 0xC0939B47, 0xBFCAAECC, 0x408D915E, 0xC0248476, 0x40F18454, 0x40B6A1CB,
        0xC0865698, 0xBFD208FA, 0x3EA661B0, 0x40549663, 0x413BCAED, 0x403B66B5, 0xBF3F8585, 0xBE4BE820, 0x3FD94B2B, 0xBE9C9F3E,
        0x3FB96219, 0x40B4E3F4, 0xBF9811D7, 0xC013B5BE, 0xC04ED314, 0xBE98050A, 0xBF49A588, 0x4092E2AA, 0x40070E64, 0x3ED3C460,
        0x402B7626, 0x3FFC199C, 0x403AFB48, 0x418B378E, 0x3FFA9768, 0x4058DDE0, 0x3FA3B5BB, 0x401EE514, 0xC140426E, 0x40B00FF0,
        0x405C03E3, 0x402BFCF2, 0xBF9EE97B, 0xC0AAB68D, 0xBFC1E5FD, 0xC0562EDA, 0xC0519A56, 0x4092D0CC, 0xC08DB874, 0xC0A4AB77,
        0xC0665858, 0xC0575914, 0xC05024CA, 0xC01AD565, 0xC09678EC, 0x3F7BAAA9, 0xBFA9A46A, 0xC080EDDA, 0xBFFEA4A7, 0xC0CDA945,
        0xC04284C8, 0x40159303, 0xBFABD243, 0xC0D73556, 0xBFAB84E4, 0x3F0BECC8, 0xBFACCADF, 0xC070AA16, 0x402F12DF, 0xC03ECCAE,
    ]

    func run() throws {
        var paths = KernelSet.availablePaths
        if let k = kernel {
            guard paths.contains(k.rawValue) else {
                eprint("bitnetd selftest: kernel path \(k.rawValue) is not available on this CPU (available: \(paths.joined(separator: ", ")))")
                throw ExitCode(1)
            }
            paths = [k.rawValue]
        }
        var allPass = true
        var pathDocs: [String] = []
        for name in paths {
            guard let path = KernelPath(rawValue: name), let r = KernelSet.selftest(path) else { continue }
            allPass = allPass && r.pass
            let list = r.failures.isEmpty ? [] : r.failures.components(separatedBy: "; ")
            pathDocs.append("{\"name\":\(jsonString(name)),\"pass\":\(r.pass),\"cases\":\(r.cases),\"failures\":[\(list.map(jsonString).joined(separator: ","))]}")
            if !json { print("\(name): \(r.pass ? "pass" : "FAIL") (\(r.cases) cases\(r.pass ? "" : ", \(r.failed) failed: \(r.failures)"))") }
        }
        // The model check, on the default path (or the one asked for).
        var maxDiff: Float = .infinity
        var modelPass = false
        var modelProblem = ""
        do {
            let dir = "/tmp/bitnetd-selftest-\(getpid())"
            mkdir(dir, 0o700)
            defer { unlink(dir + "/m.gguf"); rmdir(dir) }
            var spec = ModelSpec()
            spec.layers = 2
            spec.embedding = 128
            spec.heads = 4
            spec.kvHeads = 2
            spec.feedForward = 256
            spec.vocab = 300
            spec.seed = 42
            try ModelFactory.write(spec, to: dir + "/m.gguf")
            var o = EngineOptions(threads: 1, contextLength: 64)
            let forced = try KernelPath.fromEnvironment()
            o.kernel = kernel ?? forced
            let engine = try Engine(modelPath: dir + "/m.gguf", options: o)
            let logits = try engine.context.forward(Self.modelIDs, logits: .last)
            let ref = Self.referenceLogits.map { Float(bitPattern: $0) }
            let maxAbs = ref.map(abs).max() ?? 0
            maxDiff = zip(logits, ref).map { abs($0 - $1) }.max() ?? .infinity
            let argmax = { (v: [Float]) in v.indices.max { v[$0] < v[$1] } }
            modelPass = logits.count == ref.count && maxDiff <= 1e-4 * (maxAbs + 1) && argmax(logits) == argmax(ref)
            if !modelPass { modelProblem = "max |Δlogit| \(maxDiff) (limit \(1e-4 * (maxAbs + 1))), argmax \(argmax(logits) ?? -1) vs \(argmax(ref) ?? -1)" }
        } catch {
            modelProblem = "\(error)"
        }
        allPass = allPass && modelPass
        if json {
            print("{\"schema\":1,\"cpu\":\(jsonString(KernelSet.cpuFeatures)),\"paths\":[\(pathDocs.joined(separator: ","))],\"model\":{\"pass\":\(modelPass),\"max_abs_diff\":\(maxDiff.isFinite ? jsonNumber(Double(maxDiff)) : "null")}}")
        } else {
            print("model: \(modelPass ? "pass" : "FAIL") (tiny generated model vs reference logits, max |Δ| \(maxDiff))\(modelProblem.isEmpty ? "" : ": " + modelProblem)")
        }
        if !allPass { throw ExitCode(1) }
    }
}
