import Foundation
import Glibc
import Mosquitto
import Platform
import Synchronization
import Testing
import TestKit

/// The libmosquitto client against a real broker.
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
