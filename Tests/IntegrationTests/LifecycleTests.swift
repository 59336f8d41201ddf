import Foundation
import Glibc
import Mosquitto
import Platform
import Synchronization
import Testing
import TestKit

/// A datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        path = Fixture.tempDir() + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let p = path
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in p.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw TestFailure("bind \(path)") }
    }

    /// Every datagram received so far.
    func drain() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while true {
            let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return out }
            out.append(String(decoding: buf.prefix(n), as: UTF8.self))
        }
    }

    deinit { close(fd) }
}

@Suite struct LifecycleTests {
    @Test func systemdNotifications() throws {
        let broker = try Broker()
        let notify = try NotifySocket()
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port),
                                   env: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        var seen: [String] = []
        #expect(poll(timeoutS: 20) { seen += notify.drain(); return seen.contains { $0.hasPrefix("READY=1") } })
        #expect(poll(timeoutS: 5) { seen += notify.drain(); return seen.contains("WATCHDOG=1") })
        daemon.signal(SIGHUP)
        #expect(poll(timeoutS: 10) { seen += notify.drain(); return seen.contains("RELOADING=1") })
        #expect(daemon.stop() == 0)
        seen += notify.drain()
        #expect(seen.contains("STOPPING=1"), "\(seen)")
    }
}
