/// Receives intermediate tensors of the first layer pass (for `logits --dump-stages`).
public protocol StageSink: AnyObject {
    func floats(_ name: String, rows: Int, cols: Int, _ data: UnsafePointer<Float>)
    func ints(_ name: String, rows: Int, cols: Int, _ data: UnsafePointer<Int32>)
}
