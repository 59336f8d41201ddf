import DaemonConfig
import Mosquitto

/// Which topics the daemon agrees to publish on when a sender chooses them (docs/daemon.md
/// "Topic safety"). Anyone who may publish to a route's input can ask for an answer on an MQTT 5
/// response topic, and an output template that starts with `{{topic.N}}` lets the sender pick the
/// first level; unchecked, that client could make the daemon write its own status or stats, another
/// device's decision topic, Home Assistant's discovery topics or `$SYS`.
///
/// A chosen topic must be publishable (`topicNameProblem`: not empty, no wildcard, no NUL,
/// ≤ 65,535 bytes, first level neither empty nor `$…`), else it is `invalid_response_topic`. With
/// `routes[].response_topics` set, a response topic must match one of those filters; without it,
/// it must not match `<topic_prefix>/#`, `<homeassistant prefix>/#` or any route's output topic
/// with each `{{…}}` level read as `+` — else `response_topic_refused`. Rendered output topics
/// that start with a template level get the same checks.
public struct TopicGuard: Sendable {
    let protected: [String]
    /// Each route's output topic as a filter (`{{…}}` levels read as `+`), by route name.
    let outputFilters: [String: String]

    public init(config: BitnetdConfig) {
        var own: [String: String] = [:]
        for r in config.routes { own[r.name] = Self.filter(of: r.outputTopic) }
        outputFilters = own
        var filters = [config.mqtt.topicPrefix + "/#", config.homeAssistant.prefix + "/#"]
        filters += config.routes.map { own[$0.name]! }
        var seen = Set<String>()
        protected = filters.filter { seen.insert($0).inserted }
    }

    static func filter(of template: Template) -> String {
        template.source.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.contains("{{") ? "+" : String($0) }.joined(separator: "/")
    }

    /// nil when `route` may answer on `topic`.
    public func responseTopicProblem(_ topic: String, route: RouteConfig) -> BadInput? {
        if let problem = topicNameProblem(topic) {
            return BadInput("invalid_response_topic", "response topic '\(excerpt(topic))': \(problem)")
        }
        if let allowed = route.responseTopics {
            if allowed.contains(where: { topicMatches(filter: $0, topic: topic) }) { return nil }
            return BadInput("response_topic_refused",
                            "response topic '\(excerpt(topic))' is not in routes[\(route.name)].response_topics")
        }
        if let f = protected.first(where: { topicMatches(filter: $0, topic: topic) }) {
            return BadInput("response_topic_refused",
                            "response topic '\(excerpt(topic))' is reserved (it matches '\(f)': the daemon's own, Home Assistant's or a route's output topics)")
        }
        return nil
    }

    /// nil when a rendered output topic may be used (checked only for templates that start with a
    /// template level: those let the sender choose where the answer goes).
    public func outputTopicProblem(_ topic: String, route: RouteConfig) -> BadInput? {
        guard let first = route.outputTopic.parts.first, !isText(first) else { return nil }
        if let problem = topicNameProblem(topic) {
            return BadInput("invalid_output_topic", "output topic '\(excerpt(topic))': \(problem)")
        }
        let own = outputFilters[route.name] ?? Self.filter(of: route.outputTopic)
        if let f = protected.first(where: { $0 != own && topicMatches(filter: $0, topic: topic) }) {
            return BadInput("output_topic_refused", "output topic '\(excerpt(topic))' is reserved (it matches '\(f)')")
        }
        return nil
    }

    private func isText(_ p: Template.Part) -> Bool {
        if case .text = p { return true }
        return false
    }

    private func excerpt(_ s: String) -> String {
        s.utf8.count <= 120 ? s : String(decoding: Array(s.utf8.prefix(120)), as: UTF8.self) + "…"
    }
}
