import JSONValue

/// One sensor reading (DESIGN.md §6): a topic suffix, a JSON object of fields, and a timestamp.
/// Plugins produce these (`SensorPlugin`), the `PluginHost` hands them to the daemon, which
/// publishes them under `PluginSettings.topic(for:prefix:)` and feeds them to routes and windows.
/// Field values are numbers, strings or booleans (`ReadingLine` enforces this for external input).
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
