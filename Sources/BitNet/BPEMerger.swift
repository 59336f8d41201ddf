/// Greedy byte-pair merging in O(n log n): a linked list of symbols and a binary heap of adjacent
/// pairs ordered by (merge rank, position). Pops the lowest-rank pair, leftmost on a tie — exactly
/// the pair a rescan of every adjacent pair would pick — and skips heap entries that a previous
/// merge made stale. A rescan per merge was O(n²): one 32,000-letter word took 13.7 s.
struct BPEMerger {
    /// (left id, right id) → (rank, merged id).
    let merges: [UInt64: (rank: Int32, id: Int32)]

    /// Work of the last `merge` call (heap pushes, pops and sift steps): the tests check it grows
    /// as n log n, not n², when the input doubles.
    private(set) var steps = 0

    init(merges: [UInt64: (rank: Int32, id: Int32)]) { self.merges = merges }

    private struct Pair: HeapOrdered {
        var rank: Int32
        var left: Int32   // index of the left symbol (original position: order = text order)
        var right: Int32
        var leftID: Int32
        var rightID: Int32
        var merged: Int32

        @inline(__always) func before(_ o: Pair) -> Bool { rank != o.rank ? rank < o.rank : left < o.left }
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Merges `symbols` (token ids; negative = a byte without a token, never merged) and returns
    /// the surviving ids in order, negatives dropped.
    mutating func merge(_ symbols: [Int32]) -> [Int32] {
        steps = 0
        let n = symbols.count
        if n < 2 { return symbols.filter { $0 >= 0 } }
        var sym = symbols
        var next = [Int32](unsafeUninitializedCapacity: n) { b, c in
            for i in 0..<n { b[i] = Int32(i + 1) }
            c = n
        }
        var prev = [Int32](unsafeUninitializedCapacity: n) { b, c in
            for i in 0..<n { b[i] = Int32(i - 1) }
            c = n
        }
        next[n - 1] = -1
        var heap = BinaryHeap<Pair>(capacity: n)
        defer { steps = heap.steps }

        func consider(_ l: Int32) {
            guard l >= 0 else { return }
            let r = next[Int(l)]
            guard r >= 0 else { return }
            let a = sym[Int(l)], b = sym[Int(r)]
            guard a >= 0, b >= 0, let m = merges[Self.key(a, b)] else { return }
            heap.push(Pair(rank: m.rank, left: l, right: r, leftID: a, rightID: b, merged: m.id))
        }

        for i in 0..<(n - 1) { consider(Int32(i)) }
        let dead: Int32 = Int32.min
        while let p = heap.pop() {
            let l = Int(p.left), r = Int(p.right)
            // Stale: one side was merged away or changed since this pair was pushed.
            guard sym[l] == p.leftID, sym[r] == p.rightID, next[l] == p.right else { continue }
            sym[l] = p.merged
            sym[r] = dead
            let after = next[r]
            next[l] = after
            if after >= 0 { prev[Int(after)] = Int32(l) }
            consider(prev[l])
            consider(Int32(l))
        }
        var out: [Int32] = []
        var i: Int32 = 0
        while i >= 0 {
            if sym[Int(i)] >= 0 { out.append(sym[Int(i)]) }
            i = next[Int(i)]
        }
        return out
    }
}
