import Glibc

/// A system call failed: which call, on which file or program, with which `errno`.
/// Printed as `PATH: DETAIL: strerror` (the parts that exist), e.g.
/// `/sys/class/thermal/thermal_zone1/temp: No such file or directory` or
/// `/usr/bin/sensor: cannot start: Permission denied`.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The C function, e.g. `open`, `read`, `posix_spawn` (for logs and tests; not printed).
    public var call: String
    /// The file or program involved, when there is one.
    public var path: String?
    /// What was being done, when the path alone does not say it (`cannot start`).
    public var detail: String?
    /// `errno`, or 0 when the problem is not an errno (then `detail` says what).
    public var code: Int32

    public init(_ call: String, path: String? = nil, detail: String? = nil, code: Int32) {
        self.call = call
        self.path = path
        self.detail = detail
        self.code = code
    }

    public var description: String {
        var parts: [String] = []
        if let path { parts.append(path) }
        if let detail { parts.append(detail) }
        if code != 0 { parts.append(errnoDescription(code)) }
        return parts.joined(separator: ": ")
    }
}

/// `strerror` as a Swift string.
public func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code))
}
