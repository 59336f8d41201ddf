/// SentencePiece encoding as llama.cpp implements it for `tokenizer.ggml.model = llama`
/// (spec model-families §13.2): start from UTF-8 characters, repeatedly merge the adjacent pair
/// whose concatenation is the vocabulary piece with the highest score (leftmost on ties), then
/// emit each final symbol's piece — or, for a character that is no piece, byte-fallback tokens
/// `<0xHH>`.
///
/// A heap of candidate pairs keeps it O(n log n) in the text length; stale pairs (a side merged
/// away since) are skipped when popped.
struct SPMMerger {
    /// Piece bytes → id.
    let ids: [[UInt8]: Int32]
    let scores: [Float]
    /// Byte → its `<0xHH>` token (or the raw one-character piece), -1 when the vocabulary has none.
    let byteToken: [Int32]
    let unknown: Int32?

    private struct Symbol {
        var start: Int
        var length: Int
        var prev: Int
        var next: Int
    }

    private struct Pair: HeapOrdered {
        var score: Float
        var left: Int
        var right: Int
        var size: Int

        /// Heap order: higher score first; on equal scores the leftmost pair.
        func before(_ o: Pair) -> Bool { score > o.score || (score == o.score && left < o.left) }
    }

    /// Heap work of the last `encode` (pushes, pops, sift steps; the tests check it grows as n log n).
    private(set) var steps = 0

    mutating func encode(_ bytes: [UInt8], into out: inout [Int32]) {
        steps = 0
        guard !bytes.isEmpty else { return }
        var symbols: [Symbol] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
            let len = min(n, bytes.count - i)
            symbols.append(Symbol(start: i, length: len, prev: symbols.count - 1, next: symbols.count + 1))
            i += len
        }
        symbols[symbols.count - 1].next = -1

        var heap = BinaryHeap<Pair>(capacity: symbols.count)
        defer { steps = heap.steps }
        func text(_ s: Int) -> ArraySlice<UInt8> { bytes[symbols[s].start..<(symbols[s].start + symbols[s].length)] }
        func tryAdd(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let t = Array(bytes[symbols[l].start..<(symbols[r].start + symbols[r].length)])
            guard let id = ids[t] else { return }
            heap.push(Pair(score: scores[Int(id)], left: l, right: r, size: t.count))
        }
        for k in 1..<symbols.count { tryAdd(k - 1, k) }
        while let p = heap.pop() {
            let l = p.left, r = p.right
            guard symbols[l].length > 0, symbols[r].length > 0, symbols[l].length + symbols[r].length == p.size else { continue }
            symbols[l].length += symbols[r].length
            symbols[r].length = 0
            symbols[l].next = symbols[r].next
            if symbols[r].next >= 0 { symbols[symbols[r].next].prev = l }
            tryAdd(symbols[l].prev, l)
            tryAdd(l, symbols[l].next)
        }
        // Every merge produced a piece, so a final symbol is a piece or a single character
        // that is none (llama.cpp's resegment then falls back to its bytes).
        var s = 0
        while s >= 0 {
            let t = Array(text(s))
            if let id = ids[t] {
                out.append(id)
            } else {
                for b in t {
                    let id = byteToken[Int(b)]
                    if id >= 0 { out.append(id) } else if let unknown { out.append(unknown) }
                }
            }
            s = symbols[s].next
        }
    }
}
