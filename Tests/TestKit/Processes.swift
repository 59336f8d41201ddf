import Foundation
import Glibc
import Mosquitto
import Platform
import Synchronization

// Fixtures for the end-to-end tests: a real mosquitto per test on its own port, the built
// bitnetd binary, mosquitto_pub as the requesting client and a libmosquitto observer.

public enum Fixture {
    /// `/tmp/bitnetd-e2e-<pid>`; folders of earlier runs whose process is gone are removed.
    public static let root: String = {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: "/tmp")) ?? [] where name.hasPrefix("bitnetd-e2e-") {
            if let pid = Int32(name.dropFirst("bitnetd-e2e-".count)), kill(pid, 0) != 0 {
                try? fm.removeItem(atPath: "/tmp/" + name)
            }
        }
        let path = "/tmp/bitnetd-e2e-\(getpid())"
        try? fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// The built daemon: $BITNETD_BIN, else .build/debug/bitnetd, else .build/release/bitnetd.
    public static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["BITNETD_BIN"] { return b }
        let cwd = FileManager.default.currentDirectoryPath
        for c in [".build/debug/bitnetd", ".build/release/bitnetd"] where FileManager.default.isExecutableFile(atPath: cwd + "/" + c) {
            return cwd + "/" + c
        }
        return "bitnetd"
    }()

    /// One small generated model shared by all tests (DESIGN.md §9: generated, never downloaded).
    public static let model: String = {
        let path = root + "/model.gguf"
        let rc = run([binary, "dev", "make-model", "--out", path, "--arch", "bitnet-b1.58", "--layers", "2",
                      "--embd", "128", "--heads", "4", "--kv-heads", "2", "--ff", "256", "--vocab", "512",
                      "--type", "i2_s", "--seed", "1"])
        precondition(rc == 0, "bitnetd dev make-model failed (\(rc)); build the package first")
        return path
    }()

    public static func tempDir() -> String {
        let dir = root + "/" + UUID().uuidString.prefix(8)
        mkdir(dir, 0o755)
        return dir
    }

    public static func write(_ path: String, _ text: String) {
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    /// A TCP port nobody listens on right now.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// Runs a program to completion; returns its exit status.
    @discardableResult
    public static func run(_ argv: [String], stdin: String? = nil, output: String? = nil) -> Int32 {
        let p = Child(argv, stdin: stdin, output: output)
        return p.wait()
    }
}

/// A child process started with posix_spawn, an empty signal mask and default signal handlers
/// (a broker started from a test thread must not inherit a blocked SIGTERM; platform notes).
public final class Child: @unchecked Sendable {
    public let pid: pid_t
    private var status: Int32?

    public init(_ argv: [String], stdin: String? = nil, output: String? = nil, env: [String: String] = [:]) {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
        let out = output ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, out, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var cargs = argv.map { strdup($0) } + [nil]
        var p = pid_t()
        let environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        var cenv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let rc = posix_spawnp(&p, argv[0], &actions, &attr, &cargs, &cenv)
        for a in cargs { free(a) }
        for e in cenv { free(e) }
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attr)
        precondition(rc == 0, "posix_spawn \(argv[0]): \(String(cString: strerror(rc)))")
        pid = p
    }

    public func signal(_ s: Int32) { kill(pid, s) }

    /// Exit status (or 128 + signal); nil if still running after `timeoutS`.
    @discardableResult
    public func wait(timeoutS: Double = 60) -> Int32 {
        if let status { return status }
        let end = Date().addingTimeInterval(timeoutS)
        while Date() < end {
            var st: Int32 = 0
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid {
                let code = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
                status = code
                return code
            }
            usleep(5_000)
        }
        return -1
    }

    public var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
            return false
        }
        return true
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            wait(timeoutS: 5)
        }
    }
}

/// A mosquitto broker on 127.0.0.1 with its own config and port.
public final class Broker: @unchecked Sendable {
    public let port: Int
    public let dir: String
    public let configPath: String
    private var child: Child?

    /// `extra` is appended to the listener's configuration (TLS, auth).
    public init(persistence: Bool = false, extra: String = "", anonymous: Bool = true, port: Int? = nil) throws {
        self.port = port ?? Fixture.freePort()
        dir = Fixture.tempDir()
        configPath = dir + "/mosquitto.conf"
        Fixture.write(configPath, """
        user root
        per_listener_settings false
        allow_anonymous \(anonymous)
        persistence \(persistence)
        persistence_location \(dir)/
        autosave_interval 1
        log_dest file \(dir)/mosquitto.log
        log_type all
        listener \(self.port) 127.0.0.1
        \(extra)

        """)
        try start()
    }

    public func start() throws {
        child = Child(["mosquitto", "-c", configPath], output: dir + "/mosquitto.out")
        let end = Date().addingTimeInterval(10)
        while !Fixture.canConnect(port: port) {
            guard Date() < end, child?.isRunning == true else {
                throw TestFailure("mosquitto did not start: \((try? String(contentsOfFile: dir + "/mosquitto.out", encoding: .utf8)) ?? "")")
            }
            usleep(10_000)
        }
    }

    public func stop() {
        child?.signal(SIGTERM)
        child?.wait(timeoutS: 10)
        child = nil
    }

    deinit { stop() }
}

/// `bitnetd run` on a generated config.
public final class DaemonProcess: @unchecked Sendable {
    public let dir: String
    public let configPath: String
    public let logPath: String
    public private(set) var child: Child?

    public let env: [String: String]

    public init(config: String, dir: String = Fixture.tempDir(), start: Bool = true, env: [String: String] = [:]) {
        self.dir = dir
        self.env = env
        configPath = dir + "/bitnetd.yaml"
        logPath = dir + "/bitnetd.log"
        Fixture.write(configPath, config)
        if start { self.start() }
    }

    public func start() {
        child = Child([Fixture.binary, "run", "--config", configPath], output: logPath, env: env)
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func rewriteConfig(_ text: String) { Fixture.write(configPath, text) }

    public func signal(_ s: Int32) { child?.signal(s) }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    public func stop(timeoutS: Double = 30) -> Int32 {
        child?.signal(SIGTERM)
        return child?.wait(timeoutS: timeoutS) ?? -1
    }

    public func waitForLog(_ text: String, timeoutS: Double = 20) -> Bool {
        poll(timeoutS: timeoutS) { self.log.contains(text) }
    }
}

/// A libmosquitto client that records every message on its subscriptions.
public final class Observer: @unchecked Sendable {
    final class Box: Sendable {
        let received = Mutex<[MQTTMessage]>([])
        let up = Atomic<Bool>(false)
    }

    public let client: MQTTClient
    private let box = Box()

    /// `persistent`: a session the broker keeps (and queues QoS 1 messages for) across its own
    /// restart, when it has persistence.
    public init(port: Int, topics: [String], tls: MQTTTLSOptions? = nil, username: String? = nil, password: String? = nil,
         version: MQTTVersion = .v5, persistent: Bool = false) throws {
        client = try MQTTClient(options: MQTTClientOptions(
            host: "127.0.0.1", port: port, version: version, clientID: "observer-\(UUID().uuidString.prefix(8))",
            cleanStart: !persistent, sessionExpiry: persistent ? 3600 : 0, username: username, password: password, tls: tls,
            reconnectMinS: 1, reconnectMaxS: 1), logger: Logger(label: "test", handler: { _, _ in }))
        client.setSubscriptions(topics.map { MQTTSubscription(filter: $0, qos: 1) })
        let box = self.box
        client.setHandlers(onMessage: { m in box.received.withLock { $0.append(m) } },
                           onConnection: { connected, _ in if connected { box.up.store(true, ordering: .relaxed) } })
        try client.start()
        guard poll(timeoutS: 10, { box.up.load(ordering: .relaxed) }) else { throw TestFailure("observer did not connect") }
        usleep(100_000) // SUBACK
    }

    public var messages: [MQTTMessage] { box.received.withLock { $0 } }

    public func messages(on topic: String) -> [MQTTMessage] { messages.filter { $0.topic == topic } }

    /// Waits until at least `count` messages on `topic` (nil = any) arrived.
    @discardableResult
    public func wait(for count: Int, on topic: String? = nil, timeoutS: Double = 20) -> [MQTTMessage] {
        _ = poll(timeoutS: timeoutS) { (topic.map { messages(on: $0) } ?? messages).count >= count }
        return topic.map { messages(on: $0) } ?? messages
    }

    public func clear() { box.received.withLock { $0.removeAll() } }

    deinit { client.stop() }
}

extension MQTTMessage {
    public var text: String { String(decoding: payload, as: UTF8.self) }
    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any]) ?? [:]
    }
}

/// `mosquitto_pub` with MQTT 5 and extra arguments.
@discardableResult
public func mqttPublish(port: Int, topic: String, message: String? = nil, file: String? = nil, qos: Int = 1,
                 extra: [String] = []) -> Int32 {
    var argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", "\(port)", "-V", "5", "-q", "\(qos)", "-t", topic]
    if let message { argv += ["-m", message] }
    if let file { argv += ["-f", file] }
    return Fixture.run(argv + extra)
}
