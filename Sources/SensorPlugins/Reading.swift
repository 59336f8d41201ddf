/// One sensor reading (DESIGN.md §6): a topic suffix, a JSON object of fields, and a timestamp.
/// The plugin contract and registry come with the plugin issue; the daemon already speaks this type.
public struct Reading: Sendable, Equatable {
    /// Appended to the plugin's topic, e.g. `cpu/thermal_zone0`.
    public var topicSuffix: String
    public var fields: JSONObject
    /// Seconds since the Unix epoch.
    public var timestamp: Double

    public init(topicSuffix: String, fields: JSONObject, timestamp: Double) {
        self.topicSuffix = topicSuffix
        self.fields = fields
        self.timestamp = timestamp
    }
}
