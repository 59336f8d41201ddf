import Foundation
import Glibc
import Mosquitto
import Platform
import Synchronization
import Testing

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

@Suite struct MQTTClientTests {
    @Test func propertiesPassIntact() throws {
        let broker = try Broker()
        final class Box: Sendable { let got = Mutex<[MQTTMessage]>([]) }
        let box = Box()
        let receiver = try MQTTClient(options: MQTTClientOptions(host: "127.0.0.1", port: broker.port, clientID: "rx",
                                                                 cleanStart: true, sessionExpiry: 0), logger: Logger(label: "test", handler: { _, _ in }))
        receiver.setSubscriptions([MQTTSubscription(filter: "p/#", qos: 1)])
        receiver.setHandlers(onMessage: { m in box.got.withLock { $0.append(m) } }, onConnection: { _, _ in })
        try receiver.start()
        defer { receiver.stop() }
        let sender = try MQTTClient(options: MQTTClientOptions(host: "127.0.0.1", port: broker.port, clientID: "tx",
                                                               cleanStart: true, sessionExpiry: 0), logger: Logger(label: "test", handler: { _, _ in }))
        try sender.start()
        defer { sender.stop() }
        #expect(poll(timeoutS: 5) { receiver.isConnected && sender.isConnected })
        usleep(100_000)
        let binary: [UInt8] = [0, 1, 2, 0xFF, 0xFE]
        try sender.publish(topic: "p/1", payload: [0x41, 0x00, 0x42], qos: 1, retain: false, properties: MQTTPublishProperties(
            responseTopic: "r/x", correlationData: binary, contentType: "application/octet-stream", messageExpiry: 300,
            userProperties: [MQTTUserProperty(name: "a", value: "1"), MQTTUserProperty(name: "a", value: "2"),
                             MQTTUserProperty(name: "ü", value: "ß")]))
        #expect(sender.waitForPublishes(timeoutS: 5))
        #expect(poll(timeoutS: 5) { box.got.withLock { $0.count } == 1 })
        let m = try #require(box.got.withLock { $0.first })
        #expect(m.payload == [0x41, 0x00, 0x42])
        #expect(m.qos == 1)
        #expect(m.responseTopic == "r/x")
        #expect(m.correlationData == binary)
        #expect(m.contentType == "application/octet-stream")
        #expect((m.messageExpiry ?? 0) > 290 && (m.messageExpiry ?? 0) <= 300)
        #expect(m.userProperties == [MQTTUserProperty(name: "a", value: "1"), MQTTUserProperty(name: "a", value: "2"),
                                     MQTTUserProperty(name: "ü", value: "ß")])
    }

    @Test func connectionRefusedIsReportedAndRetried() throws {
        let port = Fixture.freePort()
        final class Box: Sendable { let lines = Mutex<[String]>([]) }
        let box = Box()
        let client = try MQTTClient(options: MQTTClientOptions(host: "127.0.0.1", port: port, clientID: "nobody",
                                                               reconnectMinS: 1, reconnectMaxS: 1),
                                    logger: Logger(label: "test", handler: { _, line in box.lines.withLock { $0.append(line) } }))
        try client.start()
        #expect(poll(timeoutS: 5) { box.lines.withLock { $0.filter { $0.contains("cannot connect") }.count >= 2 } })
        // A broker appearing on the port is picked up by the next attempt.
        let broker = try Broker(port: port)
        #expect(poll(timeoutS: 5) { client.isConnected })
        client.stop()
        _ = broker
    }
}
