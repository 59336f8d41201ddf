/// Splits text into the fragments BPE runs on (spec §5.2). Hand-written matchers for the regexes,
/// working on Unicode scalars with the standard library's Unicode properties (no regex engine and
/// no Foundation on the device).
public enum PreTokenizer: String, Sendable {
    /// The Llama-3 pattern the 2B4T model was trained with (HF tokenizer.json).
    case llama3
    /// llama.cpp's "default" BPE pre-tokenizer, which bitnet.cpp uses for the published file
    /// (no `tokenizer.ggml.pre`): four regexes applied in sequence (bitnet.cpp parity mode).
    case `default`
    /// GPT-2's single pattern (`tokenizer.ggml.pre = gpt2`).
    case gpt2
    /// Falcon3 and Falcon-E (`falcon3`, `falcon_e`): three regexes in sequence, as llama.cpp —
    /// punctuation runs (with `$+<=>^~|` and the backtick), GPT-2, single ASCII digits.
    case falcon3

    /// Maps `tokenizer.ggml.pre` values to a mode; nil for unknown names.
    public init?(ggmlName: String) {
        switch ggmlName {
        case "llama-bpe", "llama3", "llama-v3", "llama3.1", "llama-3": self = .llama3
        case "default": self = .default
        case "gpt2", "gpt-2": self = .gpt2
        case "falcon3", "falcon_e", "falcon-e": self = .falcon3
        default: return nil
        }
    }

    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var ranges: [Range<Int>]
        switch self {
        case .llama3:
            ranges = Self.scan(scalars, 0..<scalars.count, Self.matchLlama3)
        case .gpt2:
            ranges = Self.scan(scalars, 0..<scalars.count, Self.matchGPT2)
        case .default:
            ranges = [0..<scalars.count]
            for matcher in [Self.matchPunctuationRun, Self.matchGPT2, Self.matchDigitsRun, Self.matchThreeASCIIDigits] {
                ranges = ranges.flatMap { Self.splitKeepingGaps(scalars, $0, matcher) }
            }
        case .falcon3:
            ranges = [0..<scalars.count]
            for matcher in [Self.matchPunctuationRunFalcon, Self.matchGPT2, Self.matchOneASCIIDigit] {
                ranges = ranges.flatMap { Self.splitKeepingGaps(scalars, $0, matcher) }
            }
        }
        return ranges.map { r in
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[r])
            return String(s)
        }
    }

    typealias Matcher = ([Unicode.Scalar], Int, Int) -> Int?  // (text, start, end) -> match end

    /// Leftmost matches covering the whole range (a position where nothing matches becomes a
    /// one-scalar fragment, which these patterns never produce in practice).
    static func scan(_ s: [Unicode.Scalar], _ r: Range<Int>, _ m: Matcher) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = r.lowerBound
        while i < r.upperBound {
            let e = m(s, i, r.upperBound) ?? (i + 1)
            out.append(i..<e)
            i = e
        }
        return out
    }

    /// Splits a range into matches and the unmatched gaps between them (llama.cpp keeps both).
    static func splitKeepingGaps(_ s: [Unicode.Scalar], _ r: Range<Int>, _ m: Matcher) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var gapStart = r.lowerBound
        var i = r.lowerBound
        while i < r.upperBound {
            if let e = m(s, i, r.upperBound), e > i {
                if gapStart < i { out.append(gapStart..<i) }
                out.append(i..<e)
                i = e
                gapStart = e
            } else {
                i += 1
            }
        }
        if gapStart < r.upperBound { out.append(gapStart..<r.upperBound) }
        return out
    }

    // MARK: Character classes

    @inline(__always) static func isLetter(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x80 { return (c.value | 0x20) >= 0x61 && (c.value | 0x20) <= 0x7A }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    @inline(__always) static func isNumber(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x80 { return c.value >= 0x30 && c.value <= 0x39 }
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    @inline(__always) static func isSpace(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x80 { return c == " " || (c.value >= 0x09 && c.value <= 0x0D) }
        return c.properties.isWhitespace
    }

    @inline(__always) static func isNewline(_ c: Unicode.Scalar) -> Bool { c == "\r" || c == "\n" }

    static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    // MARK: Matchers

    /// `'s|'t|'re|'ve|'m|'ll|'d`, case-insensitive when `ci`.
    static func matchContraction(_ s: [Unicode.Scalar], _ i: Int, _ end: Int, ci: Bool) -> Int? {
        guard s[i] == "'", i + 1 < end else { return nil }
        func lower(_ c: Unicode.Scalar) -> Unicode.Scalar {
            ci && c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(c.value + 32)! : c
        }
        let a = lower(s[i + 1])
        if a == "s" || a == "t" || a == "m" || a == "d" { return i + 2 }
        if i + 2 < end {
            let b = lower(s[i + 2])
            if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return i + 3 }
        }
        return nil
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    static func matchLlama3(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        if let e = matchContraction(s, i, end, ci: true) { return e }
        let c = s[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !isNewline(c) && !isLetter(c) && !isNumber(c), i + 1 < end, isLetter(s[i + 1]) {
            var j = i + 1
            while j < end && isLetter(s[j]) { j += 1 }
            return j
        }
        if isLetter(c) {
            var j = i
            while j < end && isLetter(s[j]) { j += 1 }
            return j
        }
        // \p{N}{1,3}
        if isNumber(c) {
            var j = i
            while j < end && j < i + 3 && isNumber(s[j]) { j += 1 }
            return j
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        do {
            var j = i
            if s[j] == " " { j += 1 }
            let k0 = j
            while j < end && !isSpace(s[j]) && !isLetter(s[j]) && !isNumber(s[j]) { j += 1 }
            if j > k0 {
                while j < end && isNewline(s[j]) { j += 1 }
                return j
            }
        }
        guard isSpace(c) else { return nil }
        var j = i
        while j < end && isSpace(s[j]) { j += 1 }
        // \s*[\r\n]+ : up to and including the last newline of the whitespace run.
        var lastNL = -1
        for k in i..<j where isNewline(s[k]) { lastNL = k }
        if lastNL >= 0 { return lastNL + 1 }
        // \s+(?!\S) : leave the last space for the next word; \s+ at the end of text or run.
        if j == end { return j }
        if j - i >= 2 { return j - 1 }
        return j
    }

    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    static func matchGPT2(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        if let e = matchContraction(s, i, end, ci: false) { return e }
        var j = i
        if s[j] == " " && j + 1 < end { j += 1 }
        let c = s[j]
        if isLetter(c) {
            while j < end && isLetter(s[j]) { j += 1 }
            return j
        }
        if isNumber(c) {
            while j < end && isNumber(s[j]) { j += 1 }
            return j
        }
        if !isSpace(c) {
            while j < end && !isSpace(s[j]) && !isLetter(s[j]) && !isNumber(s[j]) { j += 1 }
            return j
        }
        j = i
        guard isSpace(s[i]) else { return nil }
        while j < end && isSpace(s[j]) { j += 1 }
        if j == end { return j }
        if j - i >= 2 { return j - 1 }
        return j
    }

    /// `[\p{P}\$\+<=>\^~\|]+`
    static func matchPunctuationRun(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        func ok(_ c: Unicode.Scalar) -> Bool {
            isPunctuation(c) || "$+<=>^~|".unicodeScalars.contains(c)
        }
        var j = i
        while j < end && ok(s[j]) { j += 1 }
        return j > i ? j : nil
    }

    /// `[\p{P}\$\+<=>\^~\|`]+` (Falcon3: the default class plus the backtick)
    static func matchPunctuationRunFalcon(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        func ok(_ c: Unicode.Scalar) -> Bool {
            isPunctuation(c) || "$+<=>^~|`".unicodeScalars.contains(c)
        }
        var j = i
        while j < end && ok(s[j]) { j += 1 }
        return j > i ? j : nil
    }

    /// `[0-9]`
    static func matchOneASCIIDigit(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        s[i].value >= 0x30 && s[i].value <= 0x39 ? i + 1 : nil
    }

    /// `\p{N}+`
    static func matchDigitsRun(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        var j = i
        while j < end && isNumber(s[j]) { j += 1 }
        return j > i ? j : nil
    }

    /// `[0-9][0-9][0-9]`
    static func matchThreeASCIIDigits(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int? {
        guard i + 3 <= end else { return nil }
        for k in i..<(i + 3) where !(s[k].value >= 0x30 && s[k].value <= 0x39) { return nil }
        return i + 3
    }
}
