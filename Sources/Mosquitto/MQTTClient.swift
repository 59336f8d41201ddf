import CMosquitto
import Glibc
import Platform
import Synchronization

/// `mosquitto_lib_init()` must run once per process before any client exists.
private let libraryInitialised: Bool = {
    mosquitto_lib_init()
    return true
}()

/// An MQTT client over libmosquitto 2.0 with its own network thread.
///
/// Why not `mosquitto_loop_start`: its automatic reconnect (`mosquitto_reconnect`) sends CONNECT
/// without properties in libmosquitto 2.0.11 (Debian 12/13), so after the first reconnect the
/// MQTT 5 session-expiry interval is 0 and the broker discards our session — and with it the QoS 1
/// requests queued while we are away — at the next disconnect. Our thread runs `mosquitto_loop`
/// and reconnects with `mosquitto_connect_bind_v5` and the full property list, with exponential
/// backoff between `reconnectMinS` and `reconnectMaxS`. (libmosquitto ≥ 2.1 has
/// `MOSQ_OPT_RECONNECT_SESSION_EXPIRY_INTERVAL`; with it, `loop_start` would do.)
///
/// Threading: handlers run on the network thread; `publish` and `setSubscriptions` may be called
/// from any thread (the handle is in threaded mode). The caller must block SIGTERM/SIGINT/SIGHUP
/// before `start()` so the network thread never receives them.
public final class MQTTClient: MQTTTransport, @unchecked Sendable {
    public typealias MessageHandler = @Sendable (MQTTMessage) -> Void
    public typealias ConnectionHandler = @Sendable (_ connected: Bool, _ detail: String) -> Void

    public let options: MQTTClientOptions
    public var version: MQTTVersion { options.version }

    private struct State {
        var subscriptions: [MQTTSubscription] = []
        var onMessage: MessageHandler?
        var onConnection: ConnectionHandler?
    }

    private let state = Mutex(State())
    private let connected = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let issued = Atomic<Int>(0)
    /// QoS ≥ 1 messages handed to libmosquitto and not acknowledged yet, by message id, with a
    /// sequence number for their order. libmosquitto keeps (and resends after a reconnect) these
    /// itself; this copy is what survives replacing the client.
    private let unacked = Mutex<(messages: [Int32: (seq: Int, message: MQTTOutgoing)], early: Set<Int32>)>(([:], []))
    private let nextSeq = Atomic<Int>(0)
    private let completed = Atomic<Int>(0)
    /// The broker answered the last CONNECT with a refusal (already logged with its reason).
    private let refused = Atomic<Bool>(false)
    private let threadDone = Atomic<Bool>(false)
    private let logger: Logger
    // Set once in init, destroyed in deinit; libmosquitto serialises access internally in threaded mode.
    private var mosq: OpaquePointer?
    private var thread: pthread_t?

    /// `logger` receives connection problems (warning/error), subscriptions (debug) and
    /// libmosquitto's own messages (its errors and warnings as such, the rest at debug/trace).
    public init(options: MQTTClientOptions, logger: Logger) throws(MQTTError) {
        precondition(libraryInitialised)
        self.options = options
        self.logger = logger
        let userdata = Unmanaged.passUnretained(self).toOpaque()
        guard let m = mosquitto_new(options.clientID, options.cleanStart, userdata) else {
            throw MQTTError(function: "mosquitto_new", code: MOSQ_ERR_NOMEM.rawValue, message: String(cString: strerror(errno)))
        }
        mosq = m
        try configure(m)
        installCallbacks(m)
    }

    deinit {
        if let mosq { mosquitto_destroy(mosq) }
    }

    public var isConnected: Bool { connected.load(ordering: .acquiring) }

    public func setHandlers(onMessage: @escaping MessageHandler, onConnection: @escaping ConnectionHandler) {
        state.withLock {
            $0.onMessage = onMessage
            $0.onConnection = onConnection
        }
    }

    private func check(_ rc: Int32, _ function: String) throws(MQTTError) {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError(function: function, code: rc, message: String(cString: mosquitto_strerror(rc)))
        }
    }

    private func configure(_ m: OpaquePointer) throws(MQTTError) {
        let o = options
        try check(mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, o.version == .v5 ? Int32(MQTT_PROTOCOL_V5) : Int32(MQTT_PROTOCOL_V311)),
                  "mosquitto_int_option(PROTOCOL_VERSION)")
        try check(mosquitto_threaded_set(m, true), "mosquitto_threaded_set")
        _ = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1)
        if let user = o.username {
            try check(mosquitto_username_pw_set(m, user, o.password), "mosquitto_username_pw_set")
        }
        if let will = o.will {
            let rc = will.payload.withUnsafeBytes {
                mosquitto_will_set_v5(m, will.topic, Int32($0.count), $0.baseAddress, Int32(will.qos), will.retain, nil)
            }
            try check(rc, "mosquitto_will_set_v5")
        }
        if let tls = o.tls {
            if tls.caFile == nil {
                try check(mosquitto_int_option(m, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "mosquitto_int_option(TLS_USE_OS_CERTS)")
            }
            if tls.caFile != nil || tls.certFile != nil {
                let capath: String? = tls.caFile == nil ? "/etc/ssl/certs" : nil
                try check(mosquitto_tls_set(m, tls.caFile, capath, tls.certFile, tls.keyFile, nil), "mosquitto_tls_set")
            }
            if !tls.verify {
                try check(mosquitto_tls_opts_set(m, 0, nil, nil), "mosquitto_tls_opts_set")
                try check(mosquitto_tls_insecure_set(m, true), "mosquitto_tls_insecure_set")
            }
        }
    }

    private func installCallbacks(_ m: OpaquePointer) {
        // These closures capture nothing (they must convert to C function pointers) and are
        // written in nonisolated code so they inherit no actor isolation (platform notes).
        mosquitto_connect_v5_callback_set(m) { _, obj, rc, _, _ in
            guard let obj else { return }
            Unmanaged<MQTTClient>.fromOpaque(obj).takeUnretainedValue().didConnect(rc: rc)
        }
        mosquitto_disconnect_v5_callback_set(m) { _, obj, rc, _ in
            guard let obj else { return }
            Unmanaged<MQTTClient>.fromOpaque(obj).takeUnretainedValue().didDisconnect(rc: rc)
        }
        mosquitto_publish_v5_callback_set(m) { _, obj, mid, _, _ in
            guard let obj else { return }
            let client = Unmanaged<MQTTClient>.fromOpaque(obj).takeUnretainedValue()
            client.unacked.withLock { book in
                // Acknowledged before `publish` could note it (the ack can beat the bookkeeping).
                // QoS 0 ids land here too and are never claimed: keep only recent ones (ids wrap
                // at 65,535, so a cleared set can never shadow a later message).
                if book.messages.removeValue(forKey: mid) == nil {
                    if book.early.count >= 4096 { book.early.removeAll() }
                    book.early.insert(mid)
                }
            }
            client.completed.add(1, ordering: .releasing)
        }
        mosquitto_message_v5_callback_set(m) { _, obj, message, props in
            guard let obj, let message else { return }
            Unmanaged<MQTTClient>.fromOpaque(obj).takeUnretainedValue().didReceive(message.pointee, props)
        }
        mosquitto_log_callback_set(m) { _, obj, level, text in
            guard let obj, let text else { return }
            let client = Unmanaged<MQTTClient>.fromOpaque(obj).takeUnretainedValue()
            let l: Logger.Level
            switch level {
            case MOSQ_LOG_ERR: l = .error
            case MOSQ_LOG_WARNING: l = .warning
            case MOSQ_LOG_INFO: l = .debug
            default: l = .trace
            }
            client.logger.log(l, String(cString: text))
        }
    }

    // MARK: Callbacks (network thread)

    private func didConnect(rc: Int32) {
        guard rc == 0 else {
            let reason = String(cString: options.version == .v5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc))
            refused.store(true, ordering: .releasing)
            logger.error("broker \(options.host):\(options.port) refused the connection: \(reason) (\(rc))")
            state.withLock { $0.onConnection }?(false, reason)
            return
        }
        connected.store(true, ordering: .releasing)
        refused.store(false, ordering: .releasing)
        // Subscriptions do not survive a clean-start session or a broker without persistence:
        // subscribe again on every connect (idempotent on the broker).
        let (subs, handler) = state.withLock { ($0.subscriptions, $0.onConnection) }
        for sub in subs { subscribe(sub) }
        handler?(true, "connected")
    }

    private func didDisconnect(rc: Int32) {
        let was = connected.exchange(false, ordering: .acquiringAndReleasing)
        if !was || stopping.load(ordering: .acquiring) { return }
        let reason = rc == 0 ? "disconnected" : String(cString: mosquitto_strerror(rc))
        state.withLock { $0.onConnection }?(false, reason)
    }

    private func didReceive(_ m: mosquitto_message, _ props: OpaquePointer?) {
        let topic = String(cString: m.topic)
        let payload: [UInt8]
        if let p = m.payload, m.payloadlen > 0 {
            payload = Array(UnsafeRawBufferPointer(start: p, count: Int(m.payloadlen)))
        } else {
            payload = []
        }
        var message = MQTTMessage(topic: topic, payload: payload, qos: Int(m.qos), retain: m.retain)
        if let props { Self.read(props, into: &message) }
        state.withLock { $0.onMessage }?(message)
    }

    /// Copies the properties out; libmosquitto allocates every string it returns and we free it.
    private static func read(_ props: OpaquePointer, into message: inout MQTTMessage) {
        var str: UnsafeMutablePointer<CChar>?
        if mosquitto_property_read_string(props, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), &str, false) != nil, let s = str {
            message.responseTopic = String(cString: s)
            free(s)
        }
        str = nil
        if mosquitto_property_read_string(props, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), &str, false) != nil, let s = str {
            message.contentType = String(cString: s)
            free(s)
        }
        var bin: UnsafeMutableRawPointer?
        var len: UInt16 = 0
        if mosquitto_property_read_binary(props, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), &bin, &len, false) != nil {
            message.correlationData = bin.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(len))) } ?? []
            free(bin)
        }
        var expiry: UInt32 = 0
        if mosquitto_property_read_int32(props, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), &expiry, false) != nil {
            message.messageExpiry = expiry
        }
        var name: UnsafeMutablePointer<CChar>?, value: UnsafeMutablePointer<CChar>?
        var p = mosquitto_property_read_string_pair(props, Int32(MQTT_PROP_USER_PROPERTY.rawValue), &name, &value, false)
        while p != nil {
            if let n = name, let v = value {
                message.userProperties.append(MQTTUserProperty(name: String(cString: n), value: String(cString: v)))
            }
            free(name)
            free(value)
            name = nil
            value = nil
            p = mosquitto_property_read_string_pair(p, Int32(MQTT_PROP_USER_PROPERTY.rawValue), &name, &value, true)
        }
    }

    // MARK: API

    private func subscribe(_ sub: MQTTSubscription) {
        guard let mosq else { return }
        // MQTT 5 "no local": our own publishes (decisions, errors) are never delivered back to us,
        // so a route whose output topic matches its own filter cannot loop. Not allowed on shared
        // subscriptions (MQTT 5 §3.8.3.1).
        let noLocal = options.version == .v5 && !sub.filter.hasPrefix("$share/") ? Int32(MQTT_SUB_OPT_NO_LOCAL.rawValue) : 0
        let rc = mosquitto_subscribe_v5(mosq, nil, sub.filter, Int32(sub.qos), noLocal, nil)
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            logger.error("subscribe \(sub.filter): \(String(cString: mosquitto_strerror(rc)))")
        } else {
            logger.debug("subscribed to \(sub.filter) (QoS \(sub.qos))")
        }
    }

    /// Replaces the subscription set: new filters are subscribed now (if connected), removed ones
    /// unsubscribed; all are subscribed again after every reconnect.
    public func setSubscriptions(_ subscriptions: [MQTTSubscription]) {
        let old = state.withLock { s -> [MQTTSubscription] in
            let old = s.subscriptions
            s.subscriptions = subscriptions
            return old
        }
        guard isConnected, let mosq else { return }
        for sub in old where !subscriptions.contains(where: { $0.filter == sub.filter }) {
            _ = mosquitto_unsubscribe_v5(mosq, nil, sub.filter, nil)
        }
        for sub in subscriptions where !old.contains(sub) {
            subscribe(sub)
        }
    }

    public func publish(topic: String, payload: [UInt8], qos: Int, retain: Bool,
                        properties: MQTTPublishProperties = MQTTPublishProperties()) throws(MQTTError) {
        guard let mosq else { return }
        var props: OpaquePointer?
        defer { if props != nil { mosquitto_property_free_all(&props) } }
        if options.version == .v5 {
            if let r = properties.responseTopic {
                _ = mosquitto_property_add_string(&props, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), r)
            }
            if let c = properties.correlationData {
                _ = c.withUnsafeBytes {
                    mosquitto_property_add_binary(&props, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), $0.baseAddress, UInt16(min($0.count, 65535)))
                }
            }
            if let t = properties.contentType {
                _ = mosquitto_property_add_string(&props, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), t)
            }
            if let e = properties.messageExpiry {
                _ = mosquitto_property_add_int32(&props, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), e)
            }
            for u in properties.userProperties {
                _ = mosquitto_property_add_string_pair(&props, Int32(MQTT_PROP_USER_PROPERTY.rawValue), u.name, u.value)
            }
        }
        issued.add(1, ordering: .relaxed)
        var mid: Int32 = 0
        let seq = nextSeq.add(1, ordering: .relaxed).oldValue
        var rc = payload.withUnsafeBytes {
            mosquitto_publish_v5(mosq, &mid, topic, Int32($0.count), $0.baseAddress, Int32(qos), retain, props)
        }
        // Not connected: libmosquitto keeps a QoS ≥ 1 message anyway and sends it after the
        // reconnect (MOSQ_ERR_NO_CONN is not a failure for it).
        if qos > 0 && rc == MOSQ_ERR_NO_CONN.rawValue { rc = MOSQ_ERR_SUCCESS.rawValue }
        if rc == MOSQ_ERR_SUCCESS.rawValue && qos > 0 {
            unacked.withLock { book in
                if book.early.remove(mid) == nil {
                    book.messages[mid] = (seq, MQTTOutgoing(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties))
                }
            }
        }
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            issued.subtract(1, ordering: .relaxed)
            throw MQTTError(function: "mosquitto_publish_v5", code: rc, message: String(cString: mosquitto_strerror(rc)))
        }
    }

    public var pendingPublishes: Int {
        max(0, issued.load(ordering: .relaxed) - completed.load(ordering: .acquiring))
    }

    public func takeUnacknowledged() -> [MQTTOutgoing] {
        unacked.withLock { book in
            defer { book = ([:], []) }
            return book.messages.values.sorted { $0.seq < $1.seq }.map(\.message)
        }
    }

    /// Waits until every publish issued so far has completed (QoS 0 written, QoS 1 acknowledged)
    /// or the timeout passes; returns whether all completed.
    public func waitForPublishes(timeoutS: Double) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(timeoutS * 1e9)
        while completed.load(ordering: .acquiring) < issued.load(ordering: .relaxed) {
            if monotonicNanoseconds() > deadline || !isConnected { return false }
            usleep(5_000)
        }
        return true
    }

    /// Starts the network thread; it connects, and reconnects after every loss until `stop()`.
    public func start() throws(MQTTError) {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let client = Unmanaged<MQTTClient>.fromOpaque(arg!).takeRetainedValue()
            client.runNetworkLoop()
            client.threadDone.store(true, ordering: .releasing)
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<MQTTClient>.fromOpaque(box).release()
            throw MQTTError(function: "pthread_create", code: rc, message: String(cString: strerror(rc)))
        }
        thread = tid
    }

    /// Stops reading, sends DISCONNECT (so the broker does not publish the will), stops and joins
    /// the thread. The DISCONNECT is sent by the network thread once it has stopped reading (see
    /// the end of `runNetworkLoop`), so every request this client handed to `onMessage` has its
    /// PUBACK ahead of the DISCONNECT, and every request it did not read stays the broker's to
    /// deliver to the next session: a client switch neither loses nor repeats a request.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        if thread == nil, let mosq, isConnected {
            _ = mosquitto_disconnect_v5(mosq, 0, nil)
        }
        if let t = thread {
            // The thread may sit in a blocking connect() to an unreachable broker (up to the TCP
            // timeout); give it a few seconds, then leave it to process exit.
            let deadline = monotonicNanoseconds() + 5_000_000_000
            while !threadDone.load(ordering: .acquiring), monotonicNanoseconds() < deadline { usleep(5_000) }
            if threadDone.load(ordering: .acquiring) {
                pthread_join(t, nil)
            } else {
                logger.warning("the MQTT thread did not stop within 5 s")
                pthread_detach(t)
            }
            thread = nil
        }
        connected.store(false, ordering: .releasing)
    }

    private func connectProperties() -> OpaquePointer? {
        var props: OpaquePointer?
        if options.version == .v5 {
            _ = mosquitto_property_add_int32(&props, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), options.sessionExpiry)
        }
        return props
    }

    private func runNetworkLoop() {
        guard let mosq else { return }
        var props = connectProperties()
        defer { mosquitto_property_free_all(&props) }
        var backoff = max(1, options.reconnectMinS)
        var needConnect = true
        var wasConnected = false
        while !stopping.load(ordering: .acquiring) {
            if needConnect {
                let rc = mosquitto_connect_bind_v5(mosq, options.host, Int32(options.port), Int32(options.keepalive), nil, props)
                if rc != MOSQ_ERR_SUCCESS.rawValue {
                    let reason = rc == MOSQ_ERR_ERRNO.rawValue ? String(cString: strerror(errno)) : String(cString: mosquitto_strerror(rc))
                    logger.warning("cannot connect to \(options.host):\(options.port): \(reason); retrying in \(backoff) s")
                    pause(seconds: backoff)
                    backoff = min(backoff * 2, options.reconnectMaxS)
                    continue
                }
                needConnect = false
            }
            // A short wait, so `stop()` is noticed within 0.1 s (it no longer wakes the loop by
            // queuing the DISCONNECT from another thread).
            let rc = mosquitto_loop(mosq, 100, 1)
            if isConnected {
                wasConnected = true
                backoff = max(1, options.reconnectMinS)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                if stopping.load(ordering: .acquiring) { break }
                connected.store(false, ordering: .releasing)
                let reason = rc == MOSQ_ERR_ERRNO.rawValue ? String(cString: strerror(errno)) : String(cString: mosquitto_strerror(rc))
                if wasConnected {
                    logger.warning("connection to \(options.host):\(options.port) lost: \(reason); reconnecting in \(backoff) s")
                } else if refused.load(ordering: .acquiring) {
                    logger.warning("retrying in \(backoff) s")
                } else {
                    logger.warning("connection to \(options.host):\(options.port) failed: \(reason); retrying in \(backoff) s")
                }
                wasConnected = false
                pause(seconds: backoff)
                backoff = min(backoff * 2, options.reconnectMaxS)
                needConnect = true
            }
        }
        // Stopped: nothing more is read. A request read now would be handled, but its PUBACK
        // would queue behind the DISCONNECT and never be sent, so the broker would deliver it
        // again to the next session (with the same client id): answered twice. Unread, it is
        // delivered once, to the next session. The PUBACKs of everything handled so far are
        // queued ahead of the DISCONNECT; write them and it out, then close.
        guard isConnected else { return }
        _ = mosquitto_disconnect_v5(mosq, 0, nil)
        for _ in 0..<40 {
            guard mosquitto_want_write(mosq) else { break }
            if mosquitto_loop_write(mosq, 1) != MOSQ_ERR_SUCCESS.rawValue { break }
            usleep(5_000)
        }
    }

    private func pause(seconds: Int) {
        let end = monotonicNanoseconds() + UInt64(seconds) * 1_000_000_000
        while monotonicNanoseconds() < end, !stopping.load(ordering: .acquiring) {
            usleep(50_000)
        }
    }
}
