/// An element of a `BinaryHeap`: `before` is the heap order (the element popped first).
protocol HeapOrdered {
    func before(_ other: Self) -> Bool
}

/// A binary heap for the tokenizers' merge loops (BPE by rank, SentencePiece by score), which
/// keeps them O(n log n). `steps` counts pushes, pops and sift steps: the tests check it grows as
/// n log n, not n², when the input doubles.
struct BinaryHeap<Element: HeapOrdered> {
    private var items: [Element] = []
    private(set) var steps = 0

    init(capacity: Int = 0) { items.reserveCapacity(capacity) }

    var isEmpty: Bool { items.isEmpty }

    @inline(__always) mutating func push(_ e: Element) {
        steps += 1
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !items[i].before(items[parent]) { break }
            steps += 1
            items.swapAt(i, parent)
            i = parent
        }
    }

    @inline(__always) mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        steps += 1
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].before(items[m]) { m = l }
                if r < items.count && items[r].before(items[m]) { m = r }
                if m == i { break }
                steps += 1
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
