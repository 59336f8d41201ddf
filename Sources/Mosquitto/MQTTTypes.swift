import Glibc
import Platform

public enum MQTTVersion: Sendable, Equatable {
    case v5
    case v311
}

public struct MQTTUserProperty: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// A received PUBLISH with the MQTT 5 properties the daemon uses.
public struct MQTTMessage: Sendable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int
    public var retain: Bool
    public var responseTopic: String?
    public var correlationData: [UInt8]?
    /// Seconds left before the message expires, as the broker forwarded it (MQTT 5).
    public var messageExpiry: UInt32?
    public var contentType: String?
    public var userProperties: [MQTTUserProperty]
    /// `CLOCK_MONOTONIC` nanoseconds when the message arrived.
    public var receivedAt: UInt64

    public init(topic: String, payload: [UInt8], qos: Int = 0, retain: Bool = false, responseTopic: String? = nil,
                correlationData: [UInt8]? = nil, messageExpiry: UInt32? = nil, contentType: String? = nil,
                userProperties: [MQTTUserProperty] = [], receivedAt: UInt64 = monotonicNanoseconds()) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.responseTopic = responseTopic
        self.correlationData = correlationData
        self.messageExpiry = messageExpiry
        self.contentType = contentType
        self.userProperties = userProperties
        self.receivedAt = receivedAt
    }
}

/// Properties to attach to an outgoing PUBLISH (ignored on an MQTT 3.1.1 connection).
public struct MQTTPublishProperties: Sendable {
    public var responseTopic: String?
    public var correlationData: [UInt8]?
    public var contentType: String?
    public var messageExpiry: UInt32?
    public var userProperties: [MQTTUserProperty]

    public init(responseTopic: String? = nil, correlationData: [UInt8]? = nil, contentType: String? = nil,
                messageExpiry: UInt32? = nil, userProperties: [MQTTUserProperty] = []) {
        self.responseTopic = responseTopic
        self.correlationData = correlationData
        self.contentType = contentType
        self.messageExpiry = messageExpiry
        self.userProperties = userProperties
    }
}

public struct MQTTWill: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: Int, retain: Bool) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}

public struct MQTTTLSOptions: Sendable, Equatable {
    /// nil = the operating system's trusted CAs.
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    /// Verify the broker certificate and its host name.
    public var verify: Bool

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, verify: Bool = true) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verify = verify
    }
}

public struct MQTTClientOptions: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var version: MQTTVersion
    public var clientID: String
    public var keepalive: Int
    public var cleanStart: Bool
    /// MQTT 5 session expiry interval, seconds, sent on every CONNECT (also reconnects).
    public var sessionExpiry: UInt32
    public var username: String?
    /// Never logged.
    public var password: String?
    public var tls: MQTTTLSOptions?
    public var will: MQTTWill?
    public var reconnectMinS: Int
    public var reconnectMaxS: Int

    public init(host: String = "localhost", port: Int = 1883, version: MQTTVersion = .v5, clientID: String,
                keepalive: Int = 60, cleanStart: Bool = false, sessionExpiry: UInt32 = 86400,
                username: String? = nil, password: String? = nil, tls: MQTTTLSOptions? = nil,
                will: MQTTWill? = nil, reconnectMinS: Int = 1, reconnectMaxS: Int = 60) {
        self.host = host
        self.port = port
        self.version = version
        self.clientID = clientID
        self.keepalive = keepalive
        self.cleanStart = cleanStart
        self.sessionExpiry = sessionExpiry
        self.username = username
        self.password = password
        self.tls = tls
        self.will = will
        self.reconnectMinS = reconnectMinS
        self.reconnectMaxS = reconnectMaxS
    }
}

public struct MQTTSubscription: Sendable, Equatable, Hashable {
    /// The filter as sent, including a `$share/<group>/` prefix.
    public var filter: String
    public var qos: Int

    public init(filter: String, qos: Int) {
        self.filter = filter
        self.qos = qos
    }
}

/// A libmosquitto call failed: the function and its `MOSQ_ERR_*` code.
public struct MQTTError: Error, Sendable, CustomStringConvertible {
    public var function: String
    public var code: Int32
    public var message: String

    public var description: String { "\(function): \(message)" }
}

/// Sends and receives MQTT messages; the daemon talks to this protocol so unit tests can use an
/// in-memory double instead of a broker.
public protocol MQTTTransport: AnyObject, Sendable {
    var version: MQTTVersion { get }
    var isConnected: Bool { get }
    func publish(topic: String, payload: [UInt8], qos: Int, retain: Bool,
                 properties: MQTTPublishProperties) throws(MQTTError)
    func setSubscriptions(_ subscriptions: [MQTTSubscription])
    /// Publishes handed over and not completed yet (QoS 0 not written, QoS 1 not acknowledged).
    var pendingPublishes: Int { get }
    /// The QoS ≥ 1 messages not acknowledged yet, oldest first, taken out of the transport's
    /// bookkeeping (before a client is dropped, so another can send them).
    func takeUnacknowledged() -> [MQTTOutgoing]
}

extension MQTTTransport {
    public var pendingPublishes: Int { 0 }
    public func takeUnacknowledged() -> [MQTTOutgoing] { [] }
}

/// A message to publish, kept while it is not acknowledged.
public struct MQTTOutgoing: Sendable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int
    public var retain: Bool
    public var properties: MQTTPublishProperties

    public init(topic: String, payload: [UInt8], qos: Int, retain: Bool, properties: MQTTPublishProperties) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}

/// Matches a topic against a subscription filter with `+` and `#` (MQTT 3.1.1 §4.7; topics
/// starting with `$` are not matched by a leading wildcard).
public func topicMatches(filter: String, topic: String) -> Bool {
    let f = filter.split(separator: "/", omittingEmptySubsequences: false)
    let t = topic.split(separator: "/", omittingEmptySubsequences: false)
    if topic.hasPrefix("$"), let first = f.first, first == "+" || first == "#" { return false }
    var i = 0
    while i < f.count {
        if f[i] == "#" { return true }
        guard i < t.count else { return false }
        if f[i] != "+" && f[i] != t[i] { return false }
        i += 1
    }
    return i == t.count
}
