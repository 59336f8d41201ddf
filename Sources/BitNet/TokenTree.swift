/// Which logits a forward call computes. Computing only what a task needs is the largest saving
/// in generation and decisions: the tied LM head is more bytes than all layers of 2B4T together.
public enum LogitRequest: Sendable {
    /// No logits (prefill of a prefix).
    case none
    /// Full vocabulary for the last token of the batch.
    case last
    /// Full vocabulary for every token of the batch (`logits` command, cross-checks).
    case all
    /// Per batch position, the full vocabulary or selected rows (label-only logits, tree passes),
    /// concatenated in request order.
    case nodes([(Int, NodeLogits)])
}

/// Tokens arranged as a forest on top of the positions already in the KV cache: every node sees
/// the cached positions, its ancestors and itself, never its siblings. One pass over the weights
/// serves several decisions (each event's changing suffix) and every label continuation of a
/// decision (a shared-prefix trie), and each node's values are exactly those a plain sequential
/// pass over its own path would give (attention probabilities are not F16-rounded in tree passes).
public struct TokenTree: Sendable {
    public private(set) var tokens: [Int32] = []
    /// Parent node of each node; -1 = follows the last cached position.
    public private(set) var parents: [Int] = []
    private var children: [Int: [Int32: Int]] = [:]

    public init() {}

    public var count: Int { tokens.count }

    /// The node for `token` under `parent` (-1 = the cached prefix), added when new.
    @discardableResult
    public mutating func node(_ token: Int32, parent: Int) -> Int {
        precondition(parent >= -1 && parent < tokens.count)
        if let n = children[parent]?[token] { return n }
        tokens.append(token)
        parents.append(parent)
        children[parent, default: [:]][token] = tokens.count - 1
        return tokens.count - 1
    }

    /// Depth of each node below the cached prefix (0 for a root).
    var depths: [Int] {
        var d = [Int](repeating: 0, count: tokens.count)
        for i in tokens.indices where parents[i] >= 0 { d[i] = d[parents[i]] + 1 }
        return d
    }
}

/// What a tree pass computes at one node.
public enum NodeLogits: Sendable {
    /// The whole vocabulary.
    case full
    /// The LM-head values of these vocabulary rows only.
    case rows([Int32])
}
