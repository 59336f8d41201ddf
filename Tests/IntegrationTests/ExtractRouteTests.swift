import Foundation
import Glibc
import Testing
import TestKit

/// `task: extract` end to end: a text request over MQTT becomes a JSON command, valid for the
/// route's schema, published on a topic chosen by one of its values.
@Suite(.serialized) struct ExtractRouteTests {
    static let routes = """
        routes:
          - name: cmd
            topic: cmd/in
            input: text
            task: extract
            prompt: "Request: {{payload}}\\nCommand: "
            max_tokens: 40
            temperature: 0
            schema:
              type: object
              properties:
                action: {enum: [open, close, toggle]}
                valve: {type: integer, minimum: 1, maximum: 8}
                seconds: {type: integer, minimum: 0, maximum: 600}
              required: [action, valve]
            output: {topic: "valves/{{value.action}}"}
          - name: door
            topic: home/+/door
            prompt: "The {{topic.1}} door is {{state}}. Answer:"
            labels: [ok, alert]
        """

    @Test func aTextRequestBecomesACommandOnItsValueTopic() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["valves/#", "bitnetd/decision/#", "replies/#", "bitnetd/error"])
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, routes: Self.routes))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to"), "\(daemon.log)")

        for i in 0..<6 { mqttPublish(port: broker.port, topic: "cmd/in", message: "open valve \(i + 1) for \(i * 30) seconds") }
        mqttPublish(port: broker.port, topic: "home/front/door", message: #"{"state":"open"}"#)
        // An MQTT 5 request: the answer goes to its response topic instead.
        mqttPublish(port: broker.port, topic: "cmd/in", message: "close valve 2",
                    extra: ["-D", "publish", "response-topic", "replies/x", "-D", "publish", "correlation-data", "c1"])
        #expect(poll(timeoutS: 60) { observer.messages.filter { $0.topic.hasPrefix("valves/") }.count == 6 }, "\(daemon.log.suffix(2000))")
        #expect(observer.wait(for: 1, on: "replies/x").count == 1)
        #expect(observer.wait(for: 1, on: "bitnetd/decision/door").count == 1)

        for m in observer.messages.filter({ $0.topic.hasPrefix("valves/") }) + observer.messages(on: "replies/x") {
            let doc = m.json
            #expect(keysInOrder(m) == ["schema", "route", "input_topic", "label", "probabilities", "text", "value", "tokens",
                                       "latency_ms", "model", "ts", "correlation"])
            #expect(doc["label"] is NSNull && (doc["probabilities"] as? [String: Any])?.isEmpty == true)
            let text = try #require(doc["text"] as? String)
            let value = try #require(doc["value"] as? [String: Any])
            // The text is the compact JSON of the value, and the value fits the schema.
            let reparsed = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            #expect(reparsed.map { NSDictionary(dictionary: $0) } == NSDictionary(dictionary: value))
            #expect(!text.contains(" ") || (value.values.contains { ($0 as? String)?.contains(" ") == true }))
            let action = try #require(value["action"] as? String)
            #expect(["open", "close", "toggle"].contains(action))
            let valve = try #require(value["valve"] as? Int)
            #expect((1...8).contains(valve))
            if let s = value["seconds"] { #expect((0...600).contains(s as? Int ?? -1)) }
            #expect(Set(value.keys).isSubset(of: ["action", "valve", "seconds"]))
            if m.topic != "replies/x" { #expect(m.topic == "valves/\(action)", "the topic is chosen by the value") }
            let tokens = try #require(doc["tokens"] as? [String: Int])
            #expect((tokens["forced"] ?? -1) > 0 && (tokens["forced"] ?? 0) <= (tokens["generated"] ?? 0))
        }
        #expect(observer.messages(on: "replies/x").first?.json["correlation"] as? String != nil)
        #expect(observer.messages(on: "bitnetd/error").isEmpty, "\(observer.messages(on: "bitnetd/error").map(\.text))")
        #expect(daemon.stop() == 0)
    }

    @Test func aSchemaThatCannotFinishInTheContextFailsWithSchemaFailed() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["bitnetd/error", "bitnetd/decision/#"])
        // A 256-token context and a schema needing more than 300 bytes (and 400 tokens allowed): the context fills first.
        let routes = """
            routes:
              - name: long
                topic: long/in
                input: text
                task: extract
                prompt: "{{payload}}"
                max_tokens: 400
                schema: {type: string, minLength: 300}
            """
        let daemon = DaemonProcess(config: daemonConfig(port: broker.port, routes: routes))
        defer { daemon.stop() }
        #expect(daemon.waitForLog("subscribed to"), "\(daemon.log)")
        mqttPublish(port: broker.port, topic: "long/in", message: "go")
        let err = try #require(observer.wait(for: 1, on: "bitnetd/error").first, "\(daemon.log)")
        #expect(err.json["error"] as? String == "schema_failed", "\(err.text)")
        #expect((err.json["detail"] as? String)?.contains("context is full") == true, "\(err.text)")
        #expect(daemon.stop() == 0)
    }
}
