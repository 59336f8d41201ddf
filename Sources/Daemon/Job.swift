import DaemonConfig
import Mosquitto

/// One inference request: a rendered prompt for one route, with where to send the answer.
public struct Job: Sendable {
    public var id: UInt64
    public var route: RouteConfig
    public var prompt: String
    public var inputTopic: String
    /// Where the decision goes: the MQTT 5 response topic when the request had one, else the
    /// route's rendered output topic.
    public var replyTopic: String
    public var isResponse: Bool
    public var correlationData: [UInt8]?
    /// `CLOCK_MONOTONIC` ns when the message arrived.
    public var receivedAt: UInt64
    /// `CLOCK_MONOTONIC` ns after which the job must not be computed (MQTT 5 message expiry).
    public var expiresAt: UInt64?
    /// A plugin reading, not an MQTT message: when its route's lane is full the oldest reading
    /// goes (newest kept), counted in `dropped_readings`.
    public var fromReading = false
}

/// Why an input could not be turned into a job; the `code` is the `error` field of the error
/// payload (DESIGN.md §8), `detail` a sentence for humans.
public struct BadInput: Error, Sendable, Equatable {
    public var code: String
    public var detail: String

    public init(_ code: String, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public static let codes = [
        "not_json", "missing_field", "wrong_type", "oversize", "invalid_utf8", "expired", "queue_full",
        "dropped", "shutting_down", "inference_failed", "invalid_response_topic", "response_topic_refused",
        "invalid_output_topic", "output_topic_refused", "schema_failed",
    ]
}
