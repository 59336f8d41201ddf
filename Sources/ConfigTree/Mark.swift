/// A position in a configuration file, 1-based like editors and compilers print it.
public struct Mark: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: Mark, b: Mark) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}
