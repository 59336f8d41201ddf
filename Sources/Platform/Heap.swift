import Glibc

/// Gives free heap pages back to the system (glibc `malloc_trim(0)`), so a burst that grew the
/// heap (a message flood) does not leave the RSS high afterwards. Looked up at run time: the Swift
/// Glibc module does not export it, and other C libraries may lack it (then it does nothing).
/// Returns whether memory was released.
@discardableResult
public func releaseFreeHeap() -> Bool {
    guard let trim = MallocTrim.function else { return false }
    return trim(0) != 0
}

private enum MallocTrim {
    typealias Function = @convention(c) (Int) -> Int32
    static let function: Function? = {
        guard let p = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return nil }
        return unsafeBitCast(p, to: Function.self)
    }()
}
