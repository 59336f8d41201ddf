/// Numbers as they are generated: `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (no exponent; integers without
/// the fraction), at most `maxBytes` long, within the schema's bounds. The question a generator
/// asks at every byte — can this prefix still become an allowed number? — is answered with
/// intervals: every completion of a prefix lies in a few intervals that are checked against the
/// bounds, so no search over digits is needed.
enum NumberText {
    static let maxBytes = 20
    /// Fraction digits at most (keeps every generated number exact enough in a Double).
    static let maxFraction = 6

    struct Parsed {
        var negative = false
        var intDigits: [UInt8] = []
        var hasDot = false
        var fracDigits: [UInt8] = []
    }

    /// Parses a prefix of the grammar; nil if `text` is not one.
    static func parse(_ text: [UInt8], integer: Bool) -> Parsed? {
        var p = Parsed()
        var i = 0
        if i < text.count && text[i] == UInt8(ascii: "-") { p.negative = true; i += 1 }
        while i < text.count, text[i] >= 48 && text[i] <= 57 {
            if p.intDigits.first == 48 { return nil }  // no digit after a leading 0
            p.intDigits.append(text[i])
            i += 1
        }
        if i < text.count && text[i] == UInt8(ascii: ".") {
            if integer || p.intDigits.isEmpty { return nil }
            p.hasDot = true
            i += 1
            while i < text.count, text[i] >= 48 && text[i] <= 57 {
                p.fracDigits.append(text[i])
                i += 1
            }
            if p.fracDigits.count > maxFraction { return nil }
        }
        return i == text.count && text.count <= maxBytes ? p : nil
    }

    static func value(_ digits: [UInt8]) -> Double {
        digits.reduce(0.0) { $0 * 10 + Double($1 - 48) }
    }

    /// True if `text` is a whole number of the grammar within the bounds.
    static func isComplete(_ text: [UInt8], _ b: JSONSchema.Bounds, integer: Bool) -> Bool {
        guard let p = parse(text, integer: integer), !p.intDigits.isEmpty, !(p.hasDot && p.fracDigits.isEmpty) else { return false }
        var v = value(p.intDigits) + value(p.fracDigits) / pow10(p.fracDigits.count)
        if p.negative { v = -v }
        guard b.admits(v) else { return false }
        if let m = b.multipleOf { return Int64(v) % m == 0 }
        return true
    }

    static func pow10(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= 10 }
        return r
    }

    /// True if some completion of `text` (itself included) is an allowed number.
    static func canComplete(_ text: [UInt8], _ b: JSONSchema.Bounds, integer: Bool) -> Bool {
        if text.isEmpty {
            return canComplete([UInt8(ascii: "-")], b, integer: integer) || (48...57).contains { canComplete([UInt8($0)], b, integer: integer) }
        }
        guard let p = parse(text, integer: integer) else { return false }
        // Magnitudes the completions can take, as [lo, hi) or [lo, hi] intervals; the sign maps
        // them onto values.
        let room = maxBytes - text.count
        var intervals: [(lo: Double, hi: Double, closed: Bool, whole: Bool)] = []
        if p.intDigits.isEmpty {
            // "" or "-": any magnitude with up to `room` digits.
            intervals.append((0, pow10(max(0, room - (integer ? 0 : 2))), false, integer))
            if !integer { intervals.append((0, pow10(max(0, room - 2)), false, false)) }
        } else if p.hasDot {
            let base = value(p.intDigits) + value(p.fracDigits) / pow10(p.fracDigits.count)
            let step = 1 / pow10(p.fracDigits.count)
            let more = min(maxFraction - p.fracDigits.count, room)
            // The prefix itself (if it has digits), or any extension by up to `more` digits.
            intervals.append((base, base + (more > 0 ? step : 0), more == 0, false))
        } else {
            let I = value(p.intDigits)
            let isZero = p.intDigits == [48]
            // The integer itself, and for numbers any fraction after it.
            intervals.append((I, I, true, true))
            if !integer && room >= 2 { intervals.append((I, I + 1, false, false)) }
            if !isZero {
                var k = 1
                while k <= room {
                    let scale = pow10(k)
                    intervals.append((I * scale, (I + 1) * scale - 1, true, true))
                    if !integer && room - k >= 2 { intervals.append((I * scale, (I + 1) * scale, false, false)) }
                    k += 1
                }
            }
        }
        for iv in intervals {
            // Values of the completions in this interval.
            var lo = p.negative ? -iv.hi : iv.lo
            var hi = p.negative ? -iv.lo : iv.hi
            let loOpen = p.negative && !iv.closed
            let hiOpen = !p.negative && !iv.closed
            // Intersect with the bounds.
            var loEx = loOpen, hiEx = hiOpen
            if let m = b.minimum, m > lo || (m == lo && b.exclusiveMinimum) { lo = m; loEx = b.exclusiveMinimum }
            if let m = b.maximum, m < hi || (m == hi && b.exclusiveMaximum) { hi = m; hiEx = b.exclusiveMaximum }
            if iv.whole || integer {
                var a = loEx ? (lo + 1).rounded(.down) : lo.rounded(.up)
                let z = hiEx ? (hi - 1).rounded(.up) : hi.rounded(.down)
                if let m = b.multipleOf {
                    let md = Double(m)
                    a = (a / md).rounded(.up) * md
                }
                if a <= z { return true }
            } else if lo < hi || (lo == hi && !loEx && !hiEx) {
                return true
            }
        }
        return false
    }

    /// The shortest allowed number (e.g. `0`, `-3`, `0.5`), or nil if the bounds admit none.
    static func shortest(_ b: JSONSchema.Bounds, integer: Bool) -> [UInt8]? {
        completion(from: [], b, integer: integer).map { $0 }
    }

    /// The bytes a deterministic depth-first search appends to `text` to make it an allowed
    /// number — a completion, and the same one again from every state along it (so a budget
    /// that admits it at one step admits its rest at the next). Nil if there is none.
    static func completion(from text: [UInt8], _ b: JSONSchema.Bounds, integer: Bool) -> [UInt8]? {
        guard canComplete(text, b, integer: integer) else { return nil }
        // Breadth first over lengths keeps the result short; the candidate order is fixed.
        let alphabet: [UInt8] = Array("0123456789-.".utf8)
        var frontier: [[UInt8]] = [[]]
        while !frontier.isEmpty {
            var next: [[UInt8]] = []
            for suffix in frontier {
                let t = text + suffix
                if isComplete(t, b, integer: integer) { return suffix }
                if t.count >= maxBytes { continue }
                for c in alphabet {
                    let u = t + [c]
                    if canComplete(u, b, integer: integer) {
                        next.append(suffix + [c])
                        // A few candidates per length are enough to find the shortest: bounds
                        // make at most the low and high edge digits interesting.
                        if next.count >= 64 { break }
                    }
                }
            }
            frontier = next
        }
        return nil
    }
}
