import DaemonConfig
import JSONValue
import SensorPlugins

/// Home Assistant MQTT discovery (issue 8 item 4): each decide route appears as a sensor whose
/// state is the decision's label, with the probabilities as attributes and availability bound to
/// the daemon's retained `<topic_prefix>/status`.
public enum HomeAssistantDiscovery {
    public static let softwareVersion = "0.1.0"

    public struct Message: Sendable {
        public var topic: String
        public var payload: JSON
    }

    /// The retained config messages for `config` (none when `homeassistant.enabled` is false), and
    /// one line per decide route that was skipped because its output topic depends on the input
    /// topic (`{{topic.N}}`), so there is no single state topic.
    public static func messages(config: BitnetdConfig, model: String) -> (messages: [Message], skipped: [String]) {
        let ha = config.homeAssistant
        guard ha.enabled else { return ([], []) }
        var out: [Message] = []
        var skipped: [String] = []
        for route in config.routes where route.task == .decide {
            var stateTopic = ""
            var fixed = true
            for part in route.outputTopic.parts {
                switch part {
                case .text(let s): stateTopic += s
                case .route: stateTopic += route.name
                default: fixed = false
                }
            }
            guard fixed else {
                skipped.append("route \(route.name) not announced: its output topic '\(route.outputTopic.source)' depends on the input topic")
                continue
            }
            let objectID = sanitize(route.name)
            let uniqueID = "bitnetd_\(ha.nodeID)_\(objectID)"
            let doc: JSON = .object([
                "name": .string(route.name),
                "unique_id": .string(uniqueID),
                "state_topic": .string(stateTopic),
                "value_template": .string("{{ value_json.label }}"),
                "json_attributes_topic": .string(stateTopic),
                "json_attributes_template": .string("{{ value_json.probabilities | tojson }}"),
                "availability_topic": .string(config.mqtt.statusTopic),
                "payload_available": .string("online"),
                "payload_not_available": .string("offline"),
                "icon": .string("mdi:brain"),
                "device": .object([
                    "identifiers": .array([.string("bitnetd_\(ha.nodeID)")]),
                    "name": .string(ha.deviceName),
                    "manufacturer": .string("bitnetd"),
                    "model": .string(model),
                    "sw_version": .string(softwareVersion),
                ]),
            ])
            out.append(Message(topic: "\(ha.prefix)/sensor/\(ha.nodeID)/\(objectID)/config", payload: doc))
        }
        return (out, skipped)
    }

    /// Route names become a topic level and an id: letters, digits, `_` and `-` are kept.
    static func sanitize(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map {
            ($0.isASCII && (($0.value >= 48 && $0.value <= 57) || ($0.value >= 65 && $0.value <= 90)
                || ($0.value >= 97 && $0.value <= 122) || $0 == "_" || $0 == "-")) ? $0 : "_"
        }))
    }
}
