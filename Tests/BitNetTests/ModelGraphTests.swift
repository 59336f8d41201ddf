import BitNet
import BitNetTools
import GGUF
import Testing
import TestKit

/// Which forward pass a file gets (spec model-families §10), the overrides, and the files the
/// loader must refuse with the tensor and the reason.
@Suite struct ModelGraphTests {
    /// A metadata-only file: enough for the graph choice.
    func metadataFile(_ dir: TempDir, arch: String, tokenizer: String = "gpt2", layers: Int = 2, heads: Int = 4, kv: Int = 4) throws -> GGUFFile {
        var w = GGUFWriter()
        w.set("general.architecture", .string(arch))
        w.set("tokenizer.ggml.model", .string(tokenizer))
        w.set(arch + ".block_count", .uint32(UInt32(layers)))
        w.set(arch + ".attention.head_count", .uint32(UInt32(heads)))
        w.set(arch + ".attention.head_count_kv", .uint32(UInt32(kv)))
        let path = dir.file("\(arch)-\(tokenizer)-\(layers)-\(heads)-\(kv).gguf")
        try w.write(to: path)
        return try GGUFFile(path: path)
    }

    @Test func theGraphComesFromMoreThanTheArchitecture() throws {
        let dir = TempDir("graph")
        defer { dir.remove() }
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "llama")).0 == .llama)
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet")).0 == .bitnet)
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet-25")).0 == .bitnet158)
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet-b1.58", layers: 30, heads: 20, kv: 5)).0 == .bitnet158)
        // A 1bitLLM model written by a 2026 converter: bitnet-b1.58, SentencePiece, 24 or 26
        // layers, MHA → the SiLU bitnet graph, and the reason says so.
        for layers in [24, 26] {
            let (g, why) = BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet-b1.58", tokenizer: "llama", layers: layers, heads: 16, kv: 16))
            #expect(g == .bitnet && why.contains("1bitLLM"), "\(why)")
        }
        // Any one of the three marks missing: 2B4T.
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet-b1.58", tokenizer: "gpt2", layers: 24, heads: 16, kv: 16)).0 == .bitnet158)
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet-b1.58", tokenizer: "llama", layers: 25, heads: 16, kv: 16)).0 == .bitnet158)
        #expect(BitNetModel.autoGraph(file: try metadataFile(dir, arch: "bitnet-b1.58", tokenizer: "llama", layers: 24, heads: 16, kv: 4)).0 == .bitnet158)
    }

    @Test func llamaFilesLoadAndForcedGraphsAreChecked() throws {
        let dir = TempDir("graph")
        defer { dir.remove() }
        var spec = ModelSpec()
        spec.architecture = "llama"
        spec.biases = true
        spec.outputType = .q8_0
        let llama = dir.file("llama.gguf")
        try ModelFactory.write(spec, to: llama)
        let m = try BitNetModel(path: llama)
        #expect(m.hp.graph == .llama && m.hp.rope == .norm && m.hp.activation == .silu)
        #expect(m.layers[0].attnSubNorm == nil && m.layers[0].qBias != nil && m.layers[0].oBias != nil && !m.tiedOutput)
        // Forcing a bitnet graph on it: the sub-norms it lacks are named.
        #expect(throws: ModelError.self) { try BitNetModel(path: llama, graph: .bitnet158) }
        do { _ = try BitNetModel(path: llama, graph: .bitnet) } catch { #expect("\(error)".contains("attn_sub_norm")) }

        let b158 = dir.file("b158.gguf")
        try ModelFactory.write(ModelSpec(), to: b158)
        #expect(try BitNetModel(path: b158).hp.graph == .bitnet158)
        do {
            _ = try BitNetModel(path: b158, graph: .llama)
            Issue.record("a file with sub-norms loaded as llama")
        } catch {
            #expect("\(error)".contains("attn_sub_norm.weight belongs to the bitnet graphs"), "\(error)")
        }
        // Forced bitnet on a 2B4T-graph file: SiLU instead of ReLU², said in the reason.
        let forced = try BitNetModel(path: b158, graph: .bitnet)
        #expect(forced.hp.activation == .silu && forced.hp.graphReason.contains("forced"))
    }

    @Test func aTernaryKThatIsNoMultipleOfTheBlockIsRefused() throws {
        // bitnet_b1_58-3B's ffn_down has K = 8640 = 67.5 × 128: written here as 8704 (68 × 128),
        // then its first dimension patched to 8640 in the tensor-info record.
        let dir = TempDir("graph")
        defer { dir.remove() }
        var spec = ModelSpec()
        spec.architecture = "bitnet"
        spec.layers = 1
        spec.feedForward = 8704
        let path = dir.file("k8640.gguf")
        try ModelFactory.write(spec, to: path)
        var bytes = readBytes(path)
        let name = Array("blk.0.ffn_down.weight".utf8)
        let at = try #require(offset(of: name, in: bytes))
        // name, then n_dims (u32), then dims[0] (u64).
        store(UInt64(8640), at: at + name.count + 4, in: &bytes)
        writeBytes(bytes, to: path)
        do {
            _ = try BitNetModel(path: path)
            Issue.record("K = 8640 loaded")
        } catch {
            #expect("\(error)".contains("blk.0.ffn_down.weight") && "\(error)".contains("I2_S row width 8640 is not a multiple of 128"), "\(error)")
        }
    }
}
