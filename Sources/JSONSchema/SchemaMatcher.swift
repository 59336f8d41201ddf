/// A byte-level recognizer of the compact JSON a schema allows: it says which bytes may come next,
/// whether the text so far is a complete instance, and how many bytes finishing it takes at least.
///
/// A state is a small set of stacks (one per `anyOf` branch still possible); each stack holds the
/// frames of the values being written, innermost last. A frame that starts a child value first
/// moves itself to "after the child", so a finished child is simply popped.
public final class SchemaMatcher: @unchecked Sendable {
    // @unchecked: the caches are touched by the generation that owns the matcher only.
    public let schema: JSONSchema
    /// Depth limit for values of unconstrained (`any`) schemas.
    static let anyDepth = 16
    private var numberCompletionCache: [[UInt8]: Int] = [:]

    public init(schema: JSONSchema) { self.schema = schema }

    enum Phase: UInt8, Sendable { case open, afterValue, afterComma, afterKey }

    enum Frame: Sendable, Equatable {
        /// A value of node `n` is about to start.
        case value(Int)
        /// Inside an object of node `n`; `next` is the first property that may still come.
        case object(node: Int, next: Int, phase: Phase)
        /// Matching `"key":` of one of `candidates` (property indices), `pos` bytes done.
        case key(node: Int, candidates: [Int], pos: Int)
        case array(node: Int, count: Int, phase: Phase)
        case string(minLength: Int, maxLength: Int, chars: Int, escape: UInt8, pending: UInt8, lo: UInt8, hi: UInt8)
        case number(node: Int, text: [UInt8])
        /// Matching one of `candidates` (indices into the node's literals), `pos` bytes done.
        case literal(node: Int, candidates: [Int], pos: Int)
        /// An object or array of an `any` schema (keys are free strings).
        case anyObject(phase: Phase)
        case anyArray(phase: Phase)
        /// `true`, `false` or `null` inside an `any` value.
        case word([UInt8], pos: Int)
    }

    public struct State: Sendable, Equatable {
        var stacks: [[Frame]]
        /// No stack is left: the text cannot become valid.
        public var isDead: Bool { stacks.isEmpty }
    }

    public var initial: State { State(stacks: [[.value(schema.root)]]) }

    // MARK: Stepping

    /// The state after `byte`, or a dead state.
    public func step(_ s: State, _ byte: UInt8) -> State {
        var out: [[Frame]] = []
        for stack in s.stacks {
            feed(stack, byte, into: &out)
        }
        if out.count > 1 { out = dedupe(out) }
        return State(stacks: out)
    }

    public func step(_ s: State, _ bytes: some Sequence<UInt8>) -> State {
        var state = s
        for b in bytes {
            state = step(state, b)
            if state.isDead { break }
        }
        return state
    }

    private func dedupe(_ stacks: [[Frame]]) -> [[Frame]] {
        var out: [[Frame]] = []
        for s in stacks where !out.contains(s) { out.append(s) }
        return out
    }

    /// True if the text so far is a complete instance (it may still go on, e.g. a number).
    public func isComplete(_ s: State) -> Bool {
        s.stacks.contains { stack in
            stack.isEmpty || (stack.count == 1 && { if case .number(let n, let t) = stack[0] { return numberComplete(n, t) } else { return false } }())
        }
    }

    /// True if no byte can follow (the instance is finished).
    public func isFinished(_ s: State) -> Bool {
        s.stacks.allSatisfy(\.isEmpty) && !s.stacks.isEmpty
    }

    private func bounds(_ node: Int) -> (JSONSchema.Bounds, Bool) {
        guard node >= 0 else { return (JSONSchema.Bounds(), false) }  // numbers inside `any` values
        switch schema.nodes[node] {
        case .integer(let b): return (b, true)
        case .number(let b): return (b, false)
        default: return (JSONSchema.Bounds(), false)  // `any` numbers
        }
    }

    private func numberComplete(_ node: Int, _ text: [UInt8]) -> Bool {
        let (b, integer) = bounds(node)
        return NumberText.isComplete(text, b, integer: integer)
    }

    /// Appends to `out` every stack `stack` can become by consuming `byte`.
    private func feed(_ stack: [Frame], _ byte: UInt8, into out: inout [[Frame]]) {
        guard let top = stack.last else { return }  // finished: nothing may follow
        var rest = stack
        rest.removeLast()
        switch top {
        case .value(let n):
            start(n, byte, below: rest, into: &out)

        case .object(let node, let next, let phase):
            guard case .object(let props) = schema.nodes[node] else { return }
            let remainingRequired = props[next...].contains { $0.required }
            switch (phase, byte) {
            case (.open, UInt8(ascii: "}")), (.afterValue, UInt8(ascii: "}")):
                if !remainingRequired { out.append(rest) }
            case (.afterValue, UInt8(ascii: ",")):
                if next < props.count { out.append(rest + [.object(node: node, next: next, phase: .afterComma)]) }
            case (.open, UInt8(ascii: "\"")), (.afterComma, UInt8(ascii: "\"")):
                // Keys in schema order: the next ones up to and including the first required.
                var candidates: [Int] = []
                for i in next..<props.count {
                    candidates.append(i)
                    if props[i].required { break }
                }
                if !candidates.isEmpty {
                    out.append(rest + [.object(node: node, next: next, phase: .afterKey), .key(node: node, candidates: candidates, pos: 1)])
                }
            default: return
            }

        case .key(let node, let candidates, let pos):
            guard case .object(let props) = schema.nodes[node] else { return }
            let left = candidates.filter { pos < props[$0].keyBytes.count && props[$0].keyBytes[pos] == byte }
            guard !left.isEmpty else { return }
            if left.count == 1 && props[left[0]].keyBytes.count == pos + 1 {
                // The key is complete (`"name":` is unique): the value follows.
                var s = rest
                s[s.count - 1] = .object(node: node, next: left[0] + 1, phase: .afterValue)
                out.append(s + [.value(props[left[0]].node)])
            } else {
                out.append(rest + [.key(node: node, candidates: left, pos: pos + 1)])
            }

        case .array(let node, let count, let phase):
            guard case .array(let items, let minItems, let maxItems) = schema.nodes[node] else { return }
            switch (phase, byte) {
            case (.open, UInt8(ascii: "]")), (.afterValue, UInt8(ascii: "]")):
                if count >= minItems { out.append(rest) }
            case (.afterValue, UInt8(ascii: ",")):
                if maxItems.map({ count < $0 }) ?? true { out.append(rest + [.array(node: node, count: count, phase: .afterComma)]) }
            case (.open, _), (.afterComma, _):
                guard maxItems.map({ count < $0 }) ?? true else { return }
                start(items, byte, below: rest + [.array(node: node, count: count + 1, phase: .afterValue)], into: &out)
            default: return
            }

        case .string(let minLength, let maxLength, let chars, let escape, let pending, let lo, let hi):
            func with(chars c: Int, escape e: UInt8 = 0, pending p: UInt8 = 0, lo l: UInt8 = 0x80, hi h: UInt8 = 0xBF) {
                out.append(rest + [.string(minLength: minLength, maxLength: maxLength, chars: c, escape: e, pending: p, lo: l, hi: h)])
            }
            if pending > 0 {
                if byte >= lo && byte <= hi { with(chars: chars, pending: pending - 1) }
                return
            }
            if escape == 1 {
                // After '\': one escaped character (already counted).
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    with(chars: chars)
                case UInt8(ascii: "u"): with(chars: chars, escape: 2)
                default: return
                }
                return
            }
            if escape >= 2 {
                // \uXXXX: escape 2…5 = hex digit 1…4 expected; no surrogates (D800–DFFF).
                let hex = (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 70) || (byte >= 97 && byte <= 102)
                guard hex else { return }
                if escape == 2 && (byte == UInt8(ascii: "d") || byte == UInt8(ascii: "D")) {
                    with(chars: chars, escape: 6)  // first digit D: the second must be 0…7
                    return
                }
                if escape == 6 {
                    guard byte >= 48 && byte <= 55 else { return }
                    with(chars: chars, escape: 4)
                    return
                }
                with(chars: chars, escape: escape == 5 ? 0 : escape + 1)
                return
            }
            switch byte {
            case UInt8(ascii: "\""):
                if chars >= minLength { out.append(rest) }
            case UInt8(ascii: "\\"):
                if chars < maxLength { with(chars: chars + 1, escape: 1) }
            case 0x20..<0x80:
                if chars < maxLength { with(chars: chars + 1) }
            case 0xC2...0xDF:
                if chars < maxLength { with(chars: chars + 1, pending: 1) }
            case 0xE0...0xEF:
                if chars < maxLength {
                    with(chars: chars + 1, pending: 2, lo: byte == 0xE0 ? 0xA0 : 0x80, hi: byte == 0xED ? 0x9F : 0xBF)
                }
            case 0xF0...0xF4:
                if chars < maxLength {
                    with(chars: chars + 1, pending: 3, lo: byte == 0xF0 ? 0x90 : 0x80, hi: byte == 0xF4 ? 0x8F : 0xBF)
                }
            default: return
            }
            // After the first continuation byte the usual range applies (handled by `with`).

        case .number(let node, let text):
            let (b, integer) = bounds(node)
            let t = text + [byte]
            if NumberText.canComplete(t, b, integer: integer) {
                out.append(rest + [.number(node: node, text: t)])
            }
            // The byte may end the number and belong to the enclosing value.
            if NumberText.isComplete(text, b, integer: integer) {
                feed(rest, byte, into: &out)
            }

        case .literal(let node, let candidates, let pos):
            guard case .literals(let lits, _) = schema.nodes[node] else { return }
            let left = candidates.filter { pos < lits[$0].count && lits[$0][pos] == byte }
            guard !left.isEmpty else { return }
            // A literal that is complete here ends; longer ones go on.
            if left.contains(where: { lits[$0].count == pos + 1 }) { out.append(rest) }
            let longer = left.filter { lits[$0].count > pos + 1 }
            if !longer.isEmpty { out.append(rest + [.literal(node: node, candidates: longer, pos: pos + 1)]) }

        case .word(let w, let pos):
            guard w[pos] == byte else { return }
            out.append(pos + 1 == w.count ? rest : rest + [.word(w, pos: pos + 1)])

        case .anyObject(let phase):
            switch (phase, byte) {
            case (.open, UInt8(ascii: "}")), (.afterValue, UInt8(ascii: "}")): out.append(rest)
            case (.afterValue, UInt8(ascii: ",")): out.append(rest + [.anyObject(phase: .afterComma)])
            case (.open, UInt8(ascii: "\"")), (.afterComma, UInt8(ascii: "\"")):
                out.append(rest + [.anyObject(phase: .afterKey), .string(minLength: 0, maxLength: Int.max, chars: 0, escape: 0, pending: 0, lo: 0x80, hi: 0xBF)])
            case (.afterKey, UInt8(ascii: ":")):
                out.append(rest + [.anyObject(phase: .afterValue), .value(anyNode)])
            default: return
            }

        case .anyArray(let phase):
            switch (phase, byte) {
            case (.open, UInt8(ascii: "]")), (.afterValue, UInt8(ascii: "]")): out.append(rest)
            case (.afterValue, UInt8(ascii: ",")): out.append(rest + [.anyArray(phase: .afterComma)])
            case (.open, _), (.afterComma, _):
                start(anyNode, byte, below: rest + [.anyArray(phase: .afterValue)], into: &out)
            default: return
            }
        }
    }

    /// The node index used for values inside `any` values (an `any` node of the schema, or -1
    /// meaning "any" when the schema has none — handled by `start`).
    private var anyNode: Int { -1 }

    /// Starts a value of node `n` (or any value for -1) with its first byte.
    private func start(_ n: Int, _ byte: UInt8, below: [Frame], into out: inout [[Frame]]) {
        let node: JSONSchema.Node = n < 0 ? .any : schema.nodes[n]
        switch node {
        case .object:
            if byte == UInt8(ascii: "{") { out.append(below + [.object(node: n, next: 0, phase: .open)]) }
        case .array:
            if byte == UInt8(ascii: "[") { out.append(below + [.array(node: n, count: 0, phase: .open)]) }
        case .string(let minLength, let maxLength):
            if byte == UInt8(ascii: "\"") {
                out.append(below + [.string(minLength: minLength, maxLength: maxLength ?? Int.max, chars: 0, escape: 0, pending: 0, lo: 0x80, hi: 0xBF)])
            }
        case .integer(let b), .number(let b):
            let integer: Bool
            if case .integer = node { integer = true } else { integer = false }
            if (byte == UInt8(ascii: "-") || (byte >= 48 && byte <= 57)) && NumberText.canComplete([byte], b, integer: integer) {
                out.append(below + [.number(node: n, text: [byte])])
            }
        case .boolean:
            if byte == UInt8(ascii: "t") { out.append(below + [.word(Array("true".utf8), pos: 1)]) }
            if byte == UInt8(ascii: "f") { out.append(below + [.word(Array("false".utf8), pos: 1)]) }
        case .null:
            if byte == UInt8(ascii: "n") { out.append(below + [.word(Array("null".utf8), pos: 1)]) }
        case .literals(let lits, _):
            let c = lits.indices.filter { lits[$0].first == byte }
            if c.contains(where: { lits[$0].count == 1 }) { out.append(below) }
            let longer = c.filter { lits[$0].count > 1 }
            if !longer.isEmpty { out.append(below + [.literal(node: n, candidates: longer, pos: 1)]) }
        case .anyOf(let branches):
            for b in branches { start(b, byte, below: below, into: &out) }
        case .ref:
            return
        case .any:
            let depth = below.count
            switch byte {
            case UInt8(ascii: "{") where depth < Self.anyDepth: out.append(below + [.anyObject(phase: .open)])
            case UInt8(ascii: "[") where depth < Self.anyDepth: out.append(below + [.anyArray(phase: .open)])
            case UInt8(ascii: "\""):
                out.append(below + [.string(minLength: 0, maxLength: Int.max, chars: 0, escape: 0, pending: 0, lo: 0x80, hi: 0xBF)])
            case UInt8(ascii: "-"), 48...57: out.append(below + [.number(node: -1, text: [byte])])
            case UInt8(ascii: "t"): out.append(below + [.word(Array("true".utf8), pos: 1)])
            case UInt8(ascii: "f"): out.append(below + [.word(Array("false".utf8), pos: 1)])
            case UInt8(ascii: "n"): out.append(below + [.word(Array("null".utf8), pos: 1)])
            default: return
            }
        }
    }

    // MARK: Shortest completion

    /// The fewest bytes that finish the text from this state (Int.max / 4 if it cannot).
    public func minCompletion(_ s: State) -> Int {
        s.stacks.map(minCompletion).min() ?? Int.max / 4
    }

    func minCompletion(_ stack: [Frame]) -> Int {
        var total = 0
        for f in stack {
            total += cost(f)
            if total >= Int.max / 8 { return Int.max / 4 }
        }
        return total
    }

    private func minBytes(_ n: Int) -> Int { n < 0 ? 1 : schema.minBytes[n] }

    /// Bytes the frame needs at least to close, not counting what frames above it need.
    private func cost(_ f: Frame) -> Int {
        switch f {
        case .value(let n): return minBytes(n)
        case .object(let node, let next, let phase):
            guard case .object(let props) = schema.nodes[node] else { return 0 }
            let required = props[next...].filter(\.required)
            let body = required.reduce(0) { $0 + $1.keyBytes.count + schema.minBytes[$1.node] }
            switch phase {
            case .open: return body + max(0, required.count - 1) + 1
            case .afterValue: return body + required.count + 1
            case .afterKey: return 0  // the key frame above counts the rest of the object
            case .afterComma:
                // One property must follow: the cheapest choice up to the first required one.
                var best = Int.max / 4
                var requiredAfter = required
                for i in next..<props.count {
                    let p = props[i]
                    if p.required { requiredAfter.removeFirst() }
                    let after = requiredAfter.reduce(0) { $0 + $1.keyBytes.count + schema.minBytes[$1.node] } + requiredAfter.count
                    best = min(best, p.keyBytes.count + schema.minBytes[p.node] + after + 1)
                    if p.required { break }
                }
                return best
            }
        case .key(let node, let candidates, let pos):
            // The rest of the key, the cheapest value, the required properties after it (each
            // with its comma) and the closing brace.
            guard case .object(let props) = schema.nodes[node] else { return 0 }
            var best = Int.max / 4
            for i in candidates {
                let p = props[i]
                let requiredAfter = props[(i + 1)...].filter(\.required)
                let after = requiredAfter.reduce(0) { $0 + $1.keyBytes.count + schema.minBytes[$1.node] } + requiredAfter.count + 1
                best = min(best, p.keyBytes.count - pos + schema.minBytes[p.node] + after)
            }
            return best
        case .array(let node, let count, let phase):
            guard case .array(let items, let minItems, _) = schema.nodes[node] else { return 0 }
            let missing = max(0, minItems - count)
            let each = schema.minBytes[items]
            switch phase {
            case .open: return missing * each + max(0, missing - 1) + 1
            case .afterValue, .afterKey: return missing * (each + 1) + 1
            case .afterComma: return max(1, missing) * (each + 1)
            }
        case .string(let minLength, _, let chars, let escape, let pending, _, _):
            let esc: Int = escape == 1 ? 1 : escape >= 2 ? (escape == 6 ? 3 : 6 - Int(escape)) : 0
            return Int(pending) + esc + max(0, minLength - chars) + 1
        case .number(let node, let text):
            return numberCompletion(node, text)
        case .literal(let node, let candidates, let pos):
            guard case .literals(let lits, _) = schema.nodes[node] else { return 0 }
            return (candidates.map { lits[$0].count - pos }.min() ?? 0)
        case .word(let w, let pos): return w.count - pos
        case .anyObject(let phase):
            switch phase {
            case .open, .afterValue: return 1
            case .afterComma: return 4 + 1  // "":0 then }
            case .afterKey: return 1 + 1 + 1  // : value }
            }
        case .anyArray(let phase):
            return phase == .afterComma ? 2 : 1
        }
    }

    private func numberCompletion(_ node: Int, _ text: [UInt8]) -> Int {
        let key = [UInt8(truncatingIfNeeded: node), UInt8(truncatingIfNeeded: node >> 8), UInt8(truncatingIfNeeded: node >> 16)] + text
        if let c = numberCompletionCache[key] { return c }
        let (b, integer) = bounds(node)
        let c = NumberText.completion(from: text, b, integer: integer)?.count ?? Int.max / 4
        if numberCompletionCache.count > 100_000 { numberCompletionCache.removeAll() }
        numberCompletionCache[key] = c
        return c
    }

    // MARK: Inside a string (the fast path of token masks)

    /// Where a string's free text is being written (one possible stack, not inside an escape):
    /// what a run of plain characters may add.
    public struct StringContext: Sendable, Equatable {
        public var minLength: Int
        public var maxLength: Int
        public var chars: Int
        /// Continuation bytes the current character still needs, and the range of the next one.
        public var pending: Int
        public var lo: UInt8
        public var hi: UInt8
        /// Bytes the frames below the string need at least after its closing quote.
        public var below: Int
    }

    public func stringContext(_ s: State) -> StringContext? {
        guard s.stacks.count == 1, let top = s.stacks[0].last,
              case .string(let mn, let mx, let chars, let escape, let pending, let lo, let hi) = top, escape == 0 else { return nil }
        return StringContext(minLength: mn, maxLength: mx, chars: chars, pending: Int(pending), lo: lo, hi: hi,
                             below: minCompletion(Array(s.stacks[0].dropLast())))
    }

    // MARK: What may come next

    /// The bytes that may come next (sorted).
    public func allowedBytes(_ s: State) -> [UInt8] {
        (0...255).compactMap { b in step(s, UInt8(b)).isDead ? nil : UInt8(b) }
    }

    /// The bytes that must come next: as long as exactly one byte is possible and the text is not
    /// complete, it is forced (keys, punctuation, the rest of a single literal). At most `limit`.
    public func forcedBytes(_ s: State, limit: Int = 64) -> [UInt8] {
        var out: [UInt8] = []
        var state = s
        while out.count < limit && !isComplete(state) {
            let next = allowedBytes(state)
            guard next.count == 1 else { break }
            out.append(next[0])
            state = step(state, next[0])
        }
        return out
    }
}
