import GGUF

/// Byte-level BPE tokenizer built from GGUF metadata (`tokenizer.ggml.model = gpt2`, spec §5).
///
/// Encoding: special tokens (CONTROL / USER_DEFINED) are split out of the text first, the rest is
/// pre-tokenized (`PreTokenizer`), each fragment's UTF-8 bytes are mapped to GPT-2's byte
/// alphabet and merged by merge rank. Decoding maps token text back to bytes; `TextStream`
/// buffers incomplete UTF-8 when streaming.
public final class Tokenizer: @unchecked Sendable {
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// The vocabulary's algorithm: byte-level BPE (`gpt2`) or SentencePiece (`llama`).
    public enum Model: String, Sendable {
        case bpe = "gpt2"
        case spm = "llama"
    }

    public let tokens: [String]
    public let types: [TokenType]
    public let model: Model
    /// SentencePiece: prepend a space to the text (and after each special token).
    public let addSpacePrefix: Bool
    private let spm: SPMMerger?
    public let preTokenizer: PreTokenizer
    /// Llama-3 emits a fragment that is itself a vocabulary entry directly ("ignore merges").
    public let ignoreMerges: Bool
    public let bos: Int32?
    public let eos: Int32?
    public let addBOS: Bool
    /// End-of-generation tokens (EOS, `<|eot_id|>`, `<|eom_id|>`, …).
    public let endOfGeneration: Set<Int32>

    /// Token text (its UTF-8 bytes) → id. Keyed by bytes, not String: String hashing normalises
    /// (slow for the non-ASCII GPT-2 alphabet) and compares canonically equivalent texts as equal.
    private let ids: [[UInt8]: Int32]
    /// (left id, right id) → (rank, merged id).
    private let merges: [UInt64: (rank: Int32, id: Int32)]
    private let byteToken: [Int32]           // byte value → token id of its GPT-2 character
    private let tokenBytes: [[UInt8]]         // token id → bytes it decodes to
    private let specials: [(bytes: [UInt8], id: Int32)]  // longest first

    public init(tokens: [String], types: [TokenType], merges mergeList: [String], preTokenizer: PreTokenizer,
                ignoreMerges: Bool, bos: Int32?, eos: Int32?, addBOS: Bool, extraEOG: [Int32] = [],
                model: Model = .bpe, scores: [Float] = [], addSpacePrefix: Bool = false, unknown: Int32? = nil) throws {
        self.tokens = tokens
        self.model = model
        self.addSpacePrefix = addSpacePrefix
        self.types = types.count == tokens.count ? types : Array(repeating: .normal, count: tokens.count)
        self.preTokenizer = preTokenizer
        self.ignoreMerges = ignoreMerges
        self.bos = bos
        self.eos = eos
        self.addBOS = addBOS

        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            let key = Array(t.utf8)
            if ids[key] == nil { ids[key] = Int32(i) }
        }
        self.ids = ids

        let (b2u, u2b) = Self.byteAlphabet()
        var u2bTable = [UInt8?](repeating: nil, count: 0x144)
        for (u, b) in u2b where u.value < 0x144 { u2bTable[Int(u.value)] = b }
        var byteToken = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if model == .spm {
                // `<0xHH>` byte tokens, else the raw one-character piece (llama.cpp's fallback).
                let hex = "<0x" + String(b, radix: 16, uppercase: true).leftPadded(to: 2) + ">"
                if let id = ids[Array(hex.utf8)] { byteToken[b] = id } else if b < 0x80, let id = ids[[UInt8(b)]] { byteToken[b] = id }
            } else if let id = ids[Array(String(b2u[b]).utf8)] {
                byteToken[b] = id
            }
        }
        self.byteToken = byteToken

        var tb: [[UInt8]] = []
        tb.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            let ty = self.types[i]
            if ty == .control || ty == .userDefined || ty == .unused {
                tb.append(Array(t.utf8))
                continue
            }
            if model == .spm {
                // `▁` is a space; BYTE tokens `<0xHH>` are that byte.
                if ty == .byte, t.utf8.count == 6, t.hasPrefix("<0x"), let v = UInt8(t.dropFirst(3).prefix(2), radix: 16) {
                    tb.append([v])
                } else {
                    tb.append(Array(t.replacingSpaceMarks().utf8))
                }
                continue
            }
            var bytes: [UInt8] = []
            for u in t.unicodeScalars {
                if u.value < 0x144, let b = u2bTable[Int(u.value)] { bytes.append(b) } else if let b = u2b[u] { bytes.append(b) } else {
                    bytes.append(contentsOf: String(u).utf8)
                }
            }
            tb.append(bytes)
        }
        tokenBytes = tb

        var m: [UInt64: (rank: Int32, id: Int32)] = [:]
        m.reserveCapacity(mergeList.count)
        for (rank, line) in mergeList.enumerated() {
            // "left right": split at the first space after position 0 (spec §5.1). A space byte
            // never occurs inside a multi-byte UTF-8 sequence, so splitting the bytes is exact.
            let u = Array(line.utf8)
            guard u.count > 2, let sp = u[1...].firstIndex(of: 0x20) else { continue }
            let l = Array(u[..<sp]), r = Array(u[(sp + 1)...])
            guard let li = ids[l], let ri = ids[r], let mi = ids[l + r] else { continue }
            let key = UInt64(UInt32(bitPattern: li)) << 32 | UInt64(UInt32(bitPattern: ri))
            if m[key] == nil { m[key] = (Int32(rank), mi) }
        }
        merges = m
        spm = model == .spm
            ? SPMMerger(ids: ids, scores: scores.count == tokens.count ? scores : Array(repeating: 0, count: tokens.count),
                        byteToken: byteToken, unknown: unknown)
            : nil

        var sp: [(bytes: [UInt8], id: Int32)] = []
        for (i, t) in tokens.enumerated() where (self.types[i] == .control || self.types[i] == .userDefined) && !t.isEmpty {
            sp.append((Array(t.utf8), Int32(i)))
        }
        sp.sort { $0.bytes.count > $1.bytes.count }
        specials = sp

        var eog = Set(extraEOG)
        if let eos { eog.insert(eos) }
        for name in ["<|eot_id|>", "<|eom_id|>", "<|end|>", "<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<EOT>"] {
            if let id = ids[Array(name.utf8)] { eog.insert(id) }
        }
        endOfGeneration = eog
    }

    /// Reads the tokenizer of a GGUF file. `override` forces a pre-tokenizer.
    public convenience init(file: GGUFFile, override: PreTokenizer? = nil) throws {
        let md = file.metadata
        func fail(_ m: String) -> ModelError { ModelError(path: file.path, m) }
        let modelName = md["tokenizer.ggml.model"]?.string ?? ""
        guard let model = Model(rawValue: modelName) else {
            throw fail("tokenizer.ggml.model '\(modelName)' is not supported (byte-level BPE 'gpt2', SentencePiece 'llama')")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.array?.strings else { throw fail("missing tokenizer.ggml.tokens") }
        let types: [TokenType] = (md["tokenizer.ggml.token_type"]?.array?.integers ?? []).map {
            TokenType(rawValue: Int32(truncatingIfNeeded: $0)) ?? .normal
        }
        let merges = md["tokenizer.ggml.merges"]?.array?.strings ?? []
        func special(_ key: String) throws -> Int32? {
            guard let v = md[key]?.integer else { return nil }
            guard v >= 0 && v < tokens.count else { throw fail("\(key) = \(v) is outside the vocabulary (\(tokens.count))") }
            return Int32(v)
        }
        // SentencePiece defaults (llama.cpp): BOS 1, EOS 2, UNK 0, a space prefix.
        let spm = model == .spm
        let bos = try special("tokenizer.ggml.bos_token_id") ?? (spm && tokens.count > 1 ? 1 : nil)
        let eos = try special("tokenizer.ggml.eos_token_id") ?? (spm && tokens.count > 2 ? 2 : nil)
        let unknown = try special("tokenizer.ggml.unknown_token_id") ?? (spm && !tokens.isEmpty ? 0 : nil)
        var extra: [Int32] = []
        if let eot = try special("tokenizer.ggml.eot_token_id") { extra.append(eot) }
        if let eom = try special("tokenizer.ggml.eom_token_id") { extra.append(eom) }
        let addBOS = md["tokenizer.ggml.add_bos_token"]?.bool ?? true

        var pre: PreTokenizer
        if spm {
            pre = .default  // unused: SentencePiece splits nothing before merging
        } else if let o = override {
            pre = o
        } else if let name = md["tokenizer.ggml.pre"]?.string {
            guard let p = PreTokenizer(ggmlName: name) else {
                throw fail("tokenizer.ggml.pre '\(name)' is not supported (llama-bpe, default, gpt2)")
            }
            pre = p
        } else {
            // The published 2B4T file has no tokenizer.ggml.pre; it was trained with Llama-3's
            // pattern (spec §5.2), which bitnet.cpp does not use. Be faithful to training.
            pre = .llama3
        }
        let scores = md["tokenizer.ggml.scores"]?.array?.floats ?? []
        if spm && scores.count != tokens.count {
            throw fail("tokenizer.ggml.scores has \(scores.count) values for \(tokens.count) tokens (SentencePiece needs one per token)")
        }
        try self.init(tokens: tokens, types: types, merges: merges, preTokenizer: pre,
                      ignoreMerges: !spm && pre == .llama3, bos: bos, eos: eos, addBOS: addBOS, extraEOG: extra,
                      model: model, scores: scores, addSpacePrefix: spm && (md["tokenizer.ggml.add_space_prefix"]?.bool ?? true),
                      unknown: unknown)
    }

    public var vocabularySize: Int { tokens.count }

    public func id(of token: String) -> Int32? { ids[Array(token.utf8)] }

    /// Tokenizes `text`. `addSpecial` prepends BOS when the file asks for it; `parseSpecial`
    /// turns special-token strings such as `<|eot_id|>` into their ids.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        if addSpecial && addBOS, let bos { out.append(bos) }
        let bytes = Array(text.utf8)
        var start = 0
        var i = 0
        // SentencePiece prefixes a space to the first text fragment and to each after a special.
        var afterSpecial = true
        if parseSpecial && !specials.isEmpty {
            while i < bytes.count {
                if let sp = specialAt(bytes, i) {
                    if start < i { encodeOrdinary(bytes[start..<i], afterSpecial: afterSpecial, into: &out) }
                    out.append(sp.id)
                    afterSpecial = true
                    i += sp.bytes.count
                    start = i
                } else {
                    i += 1
                }
            }
        }
        if start < bytes.count { encodeOrdinary(bytes[start...], afterSpecial: afterSpecial, into: &out) }
        return out
    }

    private func specialAt(_ bytes: [UInt8], _ i: Int) -> (bytes: [UInt8], id: Int32)? {
        for sp in specials where sp.bytes.count <= bytes.count - i && sp.bytes[0] == bytes[i] {
            var match = true
            for k in 1..<sp.bytes.count where bytes[i + k] != sp.bytes[k] {
                match = false
                break
            }
            if match { return sp }
        }
        return nil
    }

    private func encodeOrdinary(_ bytes: ArraySlice<UInt8>, afterSpecial: Bool = false, into out: inout [Int32]) {
        if let spm {
            // Spaces become `▁` (no other normalisation, as llama.cpp).
            var text: [UInt8] = addSpacePrefix && afterSpecial ? [0xE2, 0x96, 0x81] : []
            text.reserveCapacity(bytes.count + 3)
            for b in bytes {
                if b == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(b) }
            }
            var merger = spm
            merger.encode(text, into: &out)
            return
        }
        // Spans between specials always start and end on UTF-8 boundaries (special tokens are
        // ASCII-delimited valid UTF-8), so decoding cannot fail for input that came from a String.
        let text = String(decoding: bytes, as: UTF8.self)
        for fragment in preTokenizer.split(text) {
            bpe(fragment, into: &out)
        }
    }

    private func bpe(_ fragment: String, into out: inout [Int32]) {
        let bytes = Array(fragment.utf8)
        if ignoreMerges {
            var s = ""
            s.unicodeScalars.reserveCapacity(bytes.count)
            let (b2u, _) = Self.byteAlphabetCached
            for b in bytes { s.unicodeScalars.append(b2u[Int(b)]) }
            if let id = ids[Array(s.utf8)] {
                out.append(id)
                return
            }
        }
        var merger = BPEMerger(merges: merges)
        out += merger.merge(bytes.map { byteToken[Int($0)] })
    }

    /// The merge table and a fragment's initial symbols, for the tests' reference merger.
    var mergeTable: [UInt64: (rank: Int32, id: Int32)] { merges }
    func byteSymbols(_ text: String) -> [Int32] { text.utf8.map { byteToken[Int($0)] } }

    /// Heap steps of SentencePiece-encoding `text` (tests: O(n log n)).
    func spmMergeSteps(_ text: String) -> Int {
        guard var merger = spm else { return 0 }
        var out: [Int32] = []
        merger.encode(Array(text.utf8), into: &out)
        return merger.steps
    }

    /// Heap steps of merging `text`'s bytes as one fragment (no pre-tokenizer, no vocabulary
    /// shortcut): a count, for the tests that check BPE stays O(n log n).
    func mergeSteps(_ text: String) -> Int {
        var merger = BPEMerger(merges: merges)
        _ = merger.merge(text.utf8.map { byteToken[Int($0)] })
        return merger.steps
    }

    /// Tokens for exactly these bytes, with no BOS and no special tokens: the BPE encoding when
    /// they are valid UTF-8 (and it decodes back to them), else one token per byte.
    public func encode(bytes: [UInt8]) -> [Int32] {
        if let text = String(validating: bytes, as: UTF8.self) {
            let ids = encode(text, addSpecial: false, parseSpecial: false)
            if ids.flatMap({ tokenBytes[Int($0)] }) == bytes { return ids }
        }
        return bytes.map { byteToken[Int($0)] }
    }

    /// Bytes a token decodes to; CONTROL tokens decode to nothing unless `special`.
    public func bytes(of id: Int32, special: Bool = false) -> [UInt8] {
        guard id >= 0 && Int(id) < tokens.count else { return [] }
        let t = types[Int(id)]
        if !special && (t == .control || t == .unused || (model == .spm && t == .unknown)) { return [] }
        return tokenBytes[Int(id)]
    }

    /// Decodes a whole sequence (invalid UTF-8 is repaired with U+FFFD). SentencePiece with a
    /// space prefix: the prefix's space at the start is removed (llama.cpp's detokenizer).
    public func decode(_ ids: [Int32], special: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids { bytes += self.bytes(of: id, special: special) }
        if model == .spm && addSpacePrefix {
            let firstText = ids.firstIndex { types[Int($0)] != .control }
            if let f = firstText, f == ids.firstIndex(where: { !self.bytes(of: $0, special: special).isEmpty }),
               bytes.first == 0x20 {
                bytes.removeFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: GPT-2 byte alphabet

    static let byteAlphabetCached = byteAlphabet()

    /// GPT-2's reversible byte ↔ printable character map: printable Latin-1 bytes map to
    /// themselves, the other 68 bytes to U+0100 onwards, in byte order.
    public static func byteAlphabet() -> ([Unicode.Scalar], [Unicode.Scalar: UInt8]) {
        var b2u = [Unicode.Scalar](repeating: " ", count: 256)
        var u2b: [Unicode.Scalar: UInt8] = [:]
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            let u = Unicode.Scalar(printable ? UInt32(b) : 256 + n)!
            if !printable { n += 1 }
            b2u[b] = u
            u2b[u] = UInt8(b)
        }
        return (b2u, u2b)
    }
}

/// Turns a stream of token ids into text, holding back incomplete UTF-8 sequences.
public struct TextStream {
    private var pending: [UInt8] = []
    let tokenizer: Tokenizer

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// Appends a token and returns the text that is now complete.
    public mutating func push(_ id: Int32) -> String {
        pending += tokenizer.bytes(of: id)
        // Find the longest prefix that ends on a complete UTF-8 sequence.
        var cut = pending.count
        var k = pending.count - 1
        var back = 0
        while k >= 0 && back < 4 {
            let b = pending[k]
            if b & 0xC0 != 0x80 {
                let need = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                if pending.count - k < need { cut = k }
                break
            }
            k -= 1
            back += 1
        }
        let out = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return out
    }

    /// Whatever is left (repaired).
    public mutating func flush() -> String {
        let s = String(decoding: pending, as: UTF8.self)
        pending = []
        return s
    }
}

extension String {
    /// SentencePiece's `▁` (U+2581) as a space.
    func replacingSpaceMarks() -> String {
        guard unicodeScalars.contains("\u{2581}") else { return self }
        var out = String.UnicodeScalarView()
        for u in unicodeScalars { out.append(u == "\u{2581}" ? " " : u) }
        return String(out)
    }

    /// Left-padded with zeros to `n` characters (hex byte names).
    public func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
