import DaemonConfig
import JSONValue
import Mosquitto
import SensorPlugins

/// Turns an incoming message into jobs: finds the routes whose filter matches the topic, checks
/// the payload (size, UTF-8, JSON), renders the prompt and the output topic. Pure: no I/O, so
/// every bad-input class is unit-testable.
public struct Router: Sendable {
    public let routes: [RouteConfig]
    public let maxPayloadBytes: Int

    public init(routes: [RouteConfig], maxPayloadBytes: Int) {
        self.routes = routes
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// Subscriptions for all routes, one per distinct filter (highest QoS wins).
    public var subscriptions: [MQTTSubscription] {
        var out: [MQTTSubscription] = []
        for r in routes where r.input != .plugin {
            if let i = out.firstIndex(where: { $0.filter == r.subscription }) {
                out[i].qos = max(out[i].qos, r.qos)
            } else {
                out.append(MQTTSubscription(filter: r.subscription, qos: r.qos))
            }
        }
        return out
    }

    /// Routes fed by MQTT messages on `topic`.
    public func matchingRoutes(topic: String) -> [RouteConfig] {
        routes.filter { $0.input != .plugin && topicMatches(filter: $0.topic, topic: topic) }
    }

    /// Routes fed by plugin readings (`input: plugin`) whose filter matches the reading's topic.
    public func readingRoutes(topic: String) -> [RouteConfig] {
        routes.filter { $0.input == .plugin && topicMatches(filter: $0.topic, topic: topic) }
    }

    /// The rendered prompt and output topic for one route, or the bad-input reason.
    public func prepare(route: RouteConfig, message: MQTTMessage, window: ReadingWindow? = nil) -> Result<(prompt: String, outputTopic: String), BadInput> {
        if message.payload.count > maxPayloadBytes {
            return .failure(BadInput("oversize", "payload is \(message.payload.count) bytes; the limit (limits.max_payload_bytes) is \(maxPayloadBytes)"))
        }
        guard let text = String(validating: message.payload, as: UTF8.self) else {
            let offset = firstInvalidUTF8Offset(message.payload)
            return .failure(BadInput("invalid_utf8", "payload is not valid UTF-8 (first bad byte at offset \(offset))"))
        }
        var json: JSON?
        if route.input == .json || route.input == .plugin {
            do {
                json = try JSON.parse(message.payload)
            } catch {
                return .failure(BadInput("not_json", "payload is not JSON: \(error)"))
            }
            guard case .object = json! else {
                return .failure(BadInput("wrong_type", "payload must be a JSON object, got \(json!.typeName)"))
            }
        }
        let levels = message.topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let prompt: String
        switch render(route.prompt, route: route, payloadText: text, json: json, levels: levels, window: window) {
        case .success(let s): prompt = s
        case .failure(let e): return .failure(e)
        }
        // An output topic that reads the generated value is rendered after generation
        // (`renderOutputTopic`); "" until then.
        var output = ""
        if !route.outputTopic.readsValue {
            switch render(route.outputTopic, route: route, payloadText: text, json: json, levels: levels, window: window) {
            case .success(let s): output = s
            case .failure(let e): return .failure(e)
            }
        }
        return .success((prompt, output))
    }

    /// The output topic of an extract route whose template reads `{{value.F}}`, once the value
    /// is known (the values were checked to be topic levels when the configuration was read).
    public static func renderOutputTopic(route: RouteConfig, inputTopic: String, value: JSON) -> Result<String, BadInput> {
        let levels = inputTopic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        return Router(routes: [], maxPayloadBytes: 0).render(route.outputTopic, route: route, payloadText: "", json: nil,
                                                              levels: levels, value: value)
    }

    func render(_ template: Template, route: RouteConfig, payloadText: String, json: JSON?, levels: [String],
                window: ReadingWindow? = nil, value generated: JSON? = nil) -> Result<String, BadInput> {
        var out = ""
        for part in template.parts {
            switch part {
            case .value(let property):
                switch generated?[property] {
                case .string(let s)?: out += s
                case .number(let d)?: out += JSON.format(d)
                default:
                    return .failure(BadInput("schema_failed", "the generated value has no property '\(property)' for the output topic"))
                }
            case .text(let s): out += s
            case .payload: out += payloadText
            case .route: out += route.name
            case .window(let path):
                guard let window else {
                    return .failure(BadInput("missing_field", "template '\(template.source)' reads window.\(path), but the route has no window"))
                }
                switch window.resolve(path) {
                case .failure(let e): return .failure(BadInput("missing_field", e.description))
                case .success(let v):
                    switch v {
                    case .string(let s): out += s
                    case .number(let d): out += JSON.format((d * 1000).rounded() / 1000) // 3 decimals in prompts
                    case .bool(let b): out += b ? "true" : "false"
                    case .null: return .failure(BadInput("wrong_type", "window.\(path) is null"))
                    case .array, .object: out += v.serialized
                    }
                }
            case .topicLevel(let n):
                guard n < levels.count else {
                    return .failure(BadInput("missing_field", "template '\(template.source)' reads topic level \(n), but topic '\(levels.joined(separator: "/"))' has \(levels.count) levels"))
                }
                out += levels[n]
            case .field(let path):
                var value = json ?? .null
                for (i, key) in path.enumerated() {
                    let sofar = path[...i].joined(separator: ".")
                    switch value {
                    case .object(let o):
                        guard let v = o[key] else {
                            return .failure(BadInput("missing_field", "payload has no field '\(sofar)'"))
                        }
                        value = v
                    case .array(let items):
                        guard let idx = Int(key), idx >= 0, idx < items.count else {
                            return .failure(BadInput("missing_field", "payload has no element '\(sofar)'"))
                        }
                        value = items[idx]
                    default:
                        return .failure(BadInput("wrong_type", "field '\(path[..<i].joined(separator: "."))' is \(value.typeName), not an object"))
                    }
                }
                switch value {
                case .string(let s): out += s
                case .number(let d): out += JSON.format(d)
                case .bool(let b): out += b ? "true" : "false"
                case .null: return .failure(BadInput("wrong_type", "field '\(path.joined(separator: "."))' is null"))
                case .array, .object: out += value.serialized
                }
            }
        }
        return .success(out)
    }
}

func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int {
    var i = 0
    while i < bytes.count {
        let b = bytes[i]
        let n: Int
        if b < 0x80 { n = 1 } else if b & 0xE0 == 0xC0 { n = 2 } else if b & 0xF0 == 0xE0 { n = 3 } else if b & 0xF8 == 0xF0 { n = 4 } else { return i }
        if i + n > bytes.count { return i }
        if String(validating: bytes[i..<i + n], as: UTF8.self) == nil { return i }
        i += n
    }
    return i
}
