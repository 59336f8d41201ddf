import Foundation
import BitNet
import GGUF
import Glibc
import Testing
import TestKit

/// `bitnetd tokenize` on the built binary: output formats, flags, exit codes, vocabulary-only files.
@Suite struct TokenizeCommandTests {
    /// Runs the binary; its stdout and exit status.
    func tokenize(_ args: [String]) -> (Int32, String) {
        let dir = Fixture.tempDir()
        let out = dir + "/out.txt"
        let rc = Fixture.run([Fixture.binary, "tokenize"] + args, output: out)
        return (rc, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    /// The generated model's metadata without its tensors, ending right after the metadata (no
    /// padding), as llama.cpp's vocab-only files do.
    func vocabularyOnly() throws -> String {
        let file = try GGUFFile(path: Fixture.model)
        var w = GGUFWriter()
        for k in file.keys { w.set(k, file.metadata[k]!) }
        w.set("zz.end", .string("end"))
        var bytes = w.header().bytes
        while bytes.last == 0 { bytes.removeLast() }
        if bytes.count % 32 == 0 { w.set("zz.end", .string("end!")); bytes = w.header().bytes; while bytes.last == 0 { bytes.removeLast() } }
        #expect(bytes.count % 32 != 0, "the file must end unpadded")
        let path = Fixture.tempDir() + "/vocab-only.gguf"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    @Test func idsPiecesFlagsAndExitCodes() throws {
        let (rc, plain) = tokenize(["--model", Fixture.model, "--text", "The door is open. <|eot_id|>"])
        #expect(rc == 0)
        let ids = plain.split(separator: "\n")[0].split(separator: " ").compactMap { Int($0) }
        #expect(plain.hasSuffix("\n") && plain.split(separator: "\n").count == 1 && ids.count > 3)
        let (_, json) = tokenize(["--model", Fixture.model, "--text", "The door is open. <|eot_id|>", "--json"])
        let doc = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let jsonIDs = (doc?["ids"] as? [Int]) ?? []
        let pieces = (doc?["pieces"] as? [String]) ?? []
        #expect(jsonIDs == ids && pieces.count == ids.count)
        #expect(pieces.first == "<|begin_of_text|>" && pieces.last == "<|eot_id|>", "\(pieces)")
        #expect(pieces.contains("Ġ") || pieces.contains { $0.hasPrefix("Ġ") }, "GPT-2 byte alphabet kept: \(pieces)")
        // --no-bos drops BOS; --no-special spells the special token out.
        let (_, noBos) = tokenize(["--model", Fixture.model, "--text", "The door is open. <|eot_id|>", "--no-bos"])
        #expect(noBos.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } == Array(ids.dropFirst()))
        let (_, plainText) = tokenize(["--model", Fixture.model, "--text", "<|eot_id|>", "--no-special", "--no-bos", "--json"])
        #expect(!plainText.contains("\"<|eot_id|>\""), "\(plainText)")
        // Exit codes: a --file that is not UTF-8 → 1, an unreadable model → 2.
        let bad = Fixture.tempDir() + "/bad.txt"
        FileManager.default.createFile(atPath: bad, contents: Data([0x61, 0xFF, 0x62]))
        #expect(tokenize(["--model", Fixture.model, "--file", bad]).0 == 1)
        #expect(tokenize(["--model", "/nonexistent.gguf", "--text", "x"]).0 == 2)
    }

    @Test func aVocabularyOnlyFileTokenizesLikeTheModel() throws {
        let vocab = try vocabularyOnly()
        let text = "Greenhouse 2: temperature 34.5 C, humidity 30 %."
        let (rcModel, fromModel) = tokenize(["--model", Fixture.model, "--text", text, "--json"])
        let (rcVocab, fromVocab) = tokenize(["--model", vocab, "--text", text, "--json"])
        #expect(rcModel == 0 && rcVocab == 0)
        #expect(fromVocab == fromModel && !fromVocab.isEmpty)
        // inspect reads it too (it has no tensors, so no model to run — said, not a parse error).
        let dir = Fixture.tempDir()
        _ = Fixture.run([Fixture.binary, "inspect", vocab], output: dir + "/inspect.txt")
        let inspect = (try? String(contentsOfFile: dir + "/inspect.txt", encoding: .utf8)) ?? ""
        #expect(!inspect.contains("truncated") && !inspect.contains("past the end"), "\(inspect)")
        #expect(inspect.contains("tokenizer"), "\(inspect)")
    }
}

/// The `"probabilities":{…}` of a `decide --json` answer as printed (latency differs between runs).
func probabilitiesText(_ json: String) -> String {
    guard let r = json.range(of: "\"probabilities\":"), let e = json[r.upperBound...].firstIndex(of: "}") else { return "" }
    return String(json[r.upperBound...e])
}

/// ARM-converted I2_S files (64-value blocks): read with `--i2s-block 64` they decide exactly as
/// the published layout does, and `inspect --i2s-block auto` tells the two apart.
@Suite struct I2SBlockCommandTests {
    static let demo = demoModel

    func run(_ args: [String]) -> (Int32, String) {
        let out = Fixture.tempDir() + "/out.txt"
        let rc = Fixture.run([Fixture.binary] + args, output: out)
        return (rc, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    @Test func armLayoutReadsExactlyAndAutoPicksIt() throws {
        let arm = Fixture.tempDir() + "/demo64.gguf"
        #expect(run(["dev", "convert-i2s", "--input", Self.demo, "--out", arm, "--block", "64"]).0 == 0)
        let prompt = "greenhouse: temperature 34 C, humidity 30 %, soil 12 %, light 900 klux. action: "
        let decide = ["decide", "--labels", "water,ventilate,heat,nothing", "--prompt", prompt, "--threads", "1"]
        func probabilities(_ args: [String]) -> String { probabilitiesText(run(decide + args + ["--json"]).1) }
        let published = probabilities(["--model", Self.demo])
        let repacked = probabilities(["--model", arm, "--i2s-block", "64"])
        let misread = probabilities(["--model", arm])
        #expect(!published.isEmpty && repacked == published, "\(repacked) vs \(published)")
        #expect(misread != published, "read with the wrong layout the model computes something else")
        for (file, want) in [(Self.demo, 128), (arm, 64)] {
            let (rc, json) = run(["inspect", "--json", "--i2s-block", "auto", file])
            let doc = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            #expect(rc == 0 && doc?["i2s_block"] as? Int == want, "\(json.suffix(300))")
            let probe = doc?["i2s_block_probe"] as? [String: Any]
            #expect(probe?["pick"] as? Int == want && probe?["perplexity_128"] is Double)
        }
    }
}

/// `bitnetd decide --stdin`: many prompts, one model load, answers in order and identical to one
/// `decide` per prompt; `--label` takes labels with commas.
@Suite struct DecideStdinTests {
    @Test func batchAnswersEqualSingleAnswers() throws {
        let dir = Fixture.tempDir()
        let prompts = ["The door is open. Answer:", "The door is closed. Answer:", "Temperature 31, humid. Answer:"]
        let input = dir + "/in.jsonl"
        Fixture.write(input, prompts.map { "\"\($0)\"" }.joined(separator: "\n") + "\n42\n")
        let out = dir + "/out.txt"
        let rc = Fixture.run(["/bin/sh", "-c", "\"$@\" < \(input)", "sh", Fixture.binary, "decide", "--model", Fixture.model,
                              "--threads", "1", "--stdin", "--label", "ok", "--label", "alert, now", "--json"], output: out)
        // (The output file has stderr too: keep the answers.)
        let lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("{") || $0 == "null" }
        #expect(rc == 1 && lines.count == 4 && lines.last == "null", "the non-string line fails alone: \(lines)")
        for (i, p) in prompts.enumerated() {
            let single = dir + "/single\(i).txt"
            #expect(Fixture.run([Fixture.binary, "decide", "--model", Fixture.model, "--threads", "1", "--prompt", p,
                                 "--label", "ok", "--label", "alert, now", "--json"], output: single) == 0)
            let one = (try? String(contentsOfFile: single, encoding: .utf8)) ?? ""
            #expect(!probabilitiesText(one).isEmpty && probabilitiesText(lines[i]) == probabilitiesText(one), "\(lines[i]) vs \(one)")
            #expect(one.contains("\"alert, now\""))
        }
    }
}

/// `bitnetd selftest`: every kernel path of this CPU and the tiny model pass; JSON shape.
@Suite struct SelftestCommandTests {
    @Test func passesHereWithJSON() throws {
        let out = Fixture.tempDir() + "/selftest.json"
        #expect(Fixture.run([Fixture.binary, "selftest", "--json"], output: out) == 0)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any]
        let paths = doc?["paths"] as? [[String: Any]] ?? []
        #expect(doc?["schema"] as? Int == 1 && paths.contains { $0["name"] as? String == "scalar" })
        #expect(paths.allSatisfy { $0["pass"] as? Bool == true && ($0["cases"] as? Int ?? 0) >= 20 }, "\(paths)")
        #expect((doc?["model"] as? [String: Any])?["pass"] as? Bool == true)
        let bad = Fixture.tempDir() + "/bad.txt"
        #expect(Fixture.run([Fixture.binary, "selftest", "--kernel", "neon-not-here"], output: bad) != 0)
    }
}

/// At start-up the daemon runs the kernel cases of the path it is about to use: a failing path is
/// skipped for the next one (logged, in the stats document), or refused when it was forced.
@Suite(.serialized) struct StartupSelftestTests {
    @Test func aFailingPathFallsBackOrIsRefusedWhenForced() throws {
        let best = KernelSet.availablePaths.last!
        guard best != "scalar" else { return }  // nothing to fall back from on a scalar-only CPU
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["bitnetd/stats"])
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, statsInterval: 1), env: ["BITNETD_TEST_FAIL_SELFTEST": best])
        defer { daemon.stop() }
        #expect(daemon.waitForLog("kernel self-test failed for \(best)"), "\(daemon.log)")
        let stats = try #require(observer.wait(for: 1, on: "bitnetd/stats").last, "\(daemon.log)")
        let kernel = stats.json["kernel"] as? [String: Any]
        #expect(kernel?["selftest_failed"] as? [String] == [best] && kernel?["path"] as? String != best, "\(stats.text)")
        #expect(daemon.stop() == 0)
        // Forced onto the failing path: a start-up error.
        let forced = DaemonProcess(config: daemonConfig(port: broker.port), env: ["BITNETD_TEST_FAIL_SELFTEST": best, "BITNETD_KERNEL": best])
        #expect(forced.child?.wait(timeoutS: 30) == 3)
        #expect(forced.log.contains("fails its self-test"), "\(forced.log)")
    }
}
