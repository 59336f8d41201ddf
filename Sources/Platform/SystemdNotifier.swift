import Glibc

/// sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET` (a path, or `@name` for the
/// abstract namespace). Does nothing when the variable is unset (not started by systemd).
public struct SystemdNotifier: Sendable {
    public let socketPath: String?
    /// Half of `$WATCHDOG_USEC`, the interval at which `WATCHDOG=1` should be sent.
    public let watchdogIntervalS: Double?

    public init(socketPath: String?, watchdogIntervalS: Double? = nil) {
        self.socketPath = socketPath
        self.watchdogIntervalS = watchdogIntervalS
    }

    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`.
    public init() {
        socketPath = getenv("NOTIFY_SOCKET").map { String(cString: $0) }
        if let w = getenv("WATCHDOG_USEC").map({ String(cString: $0) }), let usec = Double(w), usec > 0 {
            watchdogIntervalS = usec / 2e6
        } else {
            watchdogIntervalS = nil
        }
    }

    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let path = socketPath, !path.isEmpty else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, len) }
            }
        }
        return sent == message.count
    }
}
