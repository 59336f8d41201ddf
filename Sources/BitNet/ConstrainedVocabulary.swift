import JSONSchema

/// The vocabulary arranged for constrained decoding, built once per model: a byte trie of every
/// ordinary token (a walk prunes whole subtrees as soon as a byte is refused) and, per token, what
/// it adds inside a JSON string when it holds only plain characters (the common case of free text,
/// checked with a few comparisons per token instead of a walk).
public final class ConstrainedVocabulary: @unchecked Sendable {
    // @unchecked: immutable after init.

    /// Token id → its bytes (empty for control/unused tokens, which are never allowed).
    let bytes: [[UInt8]]
    // Trie in CSR form: node i's children are childByte/childNode[childStart[i] ..< childStart[i + 1]],
    // its tokens nodeToken[tokenStart[i] ..< tokenStart[i + 1]]. Node 0 is the root.
    private var childStart: [Int32] = []
    private var childByte: [UInt8] = []
    private var childNode: [Int32] = []
    private var tokenStart: [Int32] = []
    private var nodeToken: [Int32] = []

    /// Per token, inside a string: plain = no `"`, `\` or control byte and valid UTF-8 apart from
    /// leading continuation bytes (finishing a character) and an unfinished last character.
    struct StringInfo {
        var plain: Bool
        /// Not plain because of a `"` or `\` after a valid plain prefix (it may close the string
        /// or start an escape); false for tokens no string can contain (control bytes, invalid
        /// UTF-8), which are never allowed inside one.
        var mayCloseOrEscape = false
        var leadContinuation: UInt8
        var firstByte: UInt8
        var chars: Int32
        var trailingNeed: UInt8
    }
    private var info: [StringInfo] = []
    /// Tokens that are not plain but may still be allowed inside a string (they close it or
    /// escape): checked by stepping the recognizer.
    private var nonPlain: [Int32] = []

    public let vocabularySize: Int

    public init(tokenizer: Tokenizer) {
        vocabularySize = tokenizer.vocabularySize
        var b: [[UInt8]] = []
        b.reserveCapacity(vocabularySize)
        for id in 0..<vocabularySize {
            let t = tokenizer.types[id]
            b.append(t == .control || t == .unused ? [] : tokenizer.bytes(of: Int32(id)))
        }
        bytes = b
        buildTrie()
        info = bytes.map(Self.stringInfo)
        nonPlain = (0..<vocabularySize).compactMap { !bytes[$0].isEmpty && !info[$0].plain && info[$0].mayCloseOrEscape ? Int32($0) : nil }
    }

    private func buildTrie() {
        // Sorted tokens share prefixes with their neighbours: build by keeping the current path.
        let order = (0..<vocabularySize).filter { !bytes[$0].isEmpty }.sorted { bytes[$0].lexicographicallyPrecedes(bytes[$1]) }
        var children: [[(UInt8, Int32)]] = [[]]
        var tokens: [[Int32]] = [[]]
        var path: [Int32] = [0]   // path[d] = node at depth d for the previous token
        var prev: [UInt8] = []
        for id in order {
            let t = bytes[id]
            var common = 0
            while common < min(t.count, prev.count) && t[common] == prev[common] { common += 1 }
            path.removeLast(path.count - 1 - common)
            for d in common..<t.count {
                let node = Int32(children.count)
                children.append([])
                tokens.append([])
                children[Int(path[d])].append((t[d], node))
                path.append(node)
            }
            tokens[Int(path[t.count])].append(Int32(id))
            prev = t
        }
        childStart = [0]
        tokenStart = [0]
        for i in children.indices {
            for (byte, node) in children[i] {
                childByte.append(byte)
                childNode.append(node)
            }
            childStart.append(Int32(childByte.count))
            nodeToken += tokens[i]
            tokenStart.append(Int32(nodeToken.count))
        }
    }

    static func stringInfo(_ t: [UInt8]) -> StringInfo {
        var i = 0
        var lead: UInt8 = 0
        while i < t.count && t[i] & 0xC0 == 0x80 && lead < 3 {
            lead += 1
            i += 1
        }
        var chars: Int32 = 0
        var plain = !t.isEmpty
        var closes = false
        var need: UInt8 = 0
        while i < t.count && plain {
            let c = t[i]
            var n = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): plain = false; closes = true
            case 0..<0x20: plain = false
            case 0x20..<0x80: n = 0
            case 0xC2...0xDF: n = 1
            case 0xE0...0xEF: n = 2; lo = c == 0xE0 ? 0xA0 : 0x80; hi = c == 0xED ? 0x9F : 0xBF
            case 0xF0...0xF4: n = 3; lo = c == 0xF0 ? 0x90 : 0x80; hi = c == 0xF4 ? 0x8F : 0xBF
            default: plain = false
            }
            guard plain else { break }
            chars += 1
            i += 1
            var k = 0
            while k < n {
                if i == t.count {
                    need = UInt8(n - k)
                    break
                }
                let cb = t[i]
                let okRange = k == 0 ? (cb >= lo && cb <= hi) : (cb & 0xC0 == 0x80)
                if !okRange { plain = false; break }
                i += 1
                k += 1
            }
        }
        return StringInfo(plain: plain, mayCloseOrEscape: closes, leadContinuation: lead, firstByte: t.first ?? 0, chars: chars,
                          trailingNeed: need)
    }

    /// The tokens that keep the output a valid prefix of an instance after `state` and leave a
    /// completion of at most `budget` bytes (so at most `budget` tokens: every byte has a token).
    /// Written into `allowed` (cleared first) as token ids.
    public func allowedTokens(_ matcher: SchemaMatcher, _ state: SchemaMatcher.State, budget: Int, into allowed: inout [Int32]) {
        allowed.removeAll(keepingCapacity: true)
        if let sc = matcher.stringContext(state) {
            for id in 0..<vocabularySize {
                let inf = info[id]
                let lead = Int(inf.leadContinuation)
                guard inf.plain else { continue }
                // The token first finishes the pending character — all of it, or only some of
                // it when the token is nothing but continuation bytes.
                var trailing = Int(inf.trailingNeed)
                if lead != sc.pending {
                    guard lead < sc.pending, lead == bytes[id].count else { continue }
                    trailing = sc.pending - lead
                }
                if sc.pending > 0 && !(inf.firstByte >= sc.lo && inf.firstByte <= sc.hi) { continue }
                let chars = sc.chars + Int(inf.chars)
                guard chars <= sc.maxLength else { continue }
                let cost = trailing + max(0, sc.minLength - chars) + 1 + sc.below
                if cost <= budget { allowed.append(Int32(id)) }
            }
            for id in nonPlain {
                let after = matcher.step(state, bytes[Int(id)])
                if !after.isDead && matcher.minCompletion(after) <= budget { allowed.append(id) }
            }
            return
        }
        walk(0, matcher, state, budget, &allowed)
    }

    private func walk(_ node: Int, _ matcher: SchemaMatcher, _ state: SchemaMatcher.State, _ budget: Int, _ allowed: inout [Int32]) {
        for c in Int(childStart[node])..<Int(childStart[node + 1]) {
            let after = matcher.step(state, childByte[c])
            if after.isDead { continue }
            let child = Int(childNode[c])
            let t0 = Int(tokenStart[child]), t1 = Int(tokenStart[child + 1])
            if t0 < t1 && matcher.minCompletion(after) <= budget {
                allowed += nodeToken[t0..<t1]
            }
            walk(child, matcher, after, budget, &allowed)
        }
    }

    /// Nodes in the trie (for the figures in `bench`/tests).
    public var trieNodes: Int { childStart.count - 1 }
}
