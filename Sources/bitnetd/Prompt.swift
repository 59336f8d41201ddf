import ArgumentParser
import ConfigTree
import Daemon
import DaemonConfig
import Glibc
import JSONValue
import Mosquitto
import SensorPlugins

/// `bitnetd prompt`: the prompt a route would feed the model for each payload — the same
/// configuration loading (conf.d, `${VAR}`) and the same rendering (`Router.prepare`) as the daemon,
/// so a training tool or a user sees exactly the daemon's bytes.
struct Prompt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the prompt a route renders for each payload read on stdin (JSON Lines).",
        discussion: """
        Each stdin line is one payload: a JSON object for `input: json` and `input: plugin` routes, \
        a JSON string (the payload text) for `input: text` routes. When the route's templates read \
        {{topic.N}}, and always with --wrapped, a line is {"payload": …, "topic": "a/b"} instead \
        ("topic" optional with --wrapped; default: the route's topic filter). For each line one \
        stdout line: the rendered prompt as a JSON string, exactly the bytes the daemon feeds the \
        model, or null if the line failed (the reason on stderr as `line N: CODE: detail`). \
        Routes with a reading window ({{window.…}}) are refused. Exit status: 0 every line \
        rendered, 1 a line failed or the configuration is invalid, 2 the configuration cannot be read.
        """)

    @Option(help: "The configuration file (conf.d/*.yaml beside it are merged as by the daemon).")
    var config: String = ConfigLoader.defaultPath

    @Option(help: "The route's name.")
    var route: String

    @Flag(help: "Every line is {\"payload\": …, \"topic\": \"…\"} (topic optional).")
    var wrapped = false

    func run() throws {
        let loaded: BitnetdConfig
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch let e as ConfigErrors {
            eprint(e.description)
            throw ExitCode(1)
        } catch {
            eprint("\(error)")
            throw ExitCode(2)
        }
        guard let r = loaded.routes.first(where: { $0.name == route }) else {
            eprint("error: \(config) has no route '\(route)' (routes: \(loaded.routes.map(\.name).joined(separator: ", ")))")
            throw ExitCode(1)
        }
        if r.window != nil || r.prompt.readsWindow || r.outputTopic.readsWindow {
            eprint("error: route '\(route)' reads a reading window ({{window.…}}); its prompt depends on earlier readings, which `bitnetd prompt` does not replay yet")
            throw ExitCode(1)
        }
        let renderer = PromptRenderer(route: r, maxPayloadBytes: loaded.limits.maxPayloadBytes,
                                      wrapped: wrapped || r.prompt.readsTopic || r.outputTopic.readsTopic)
        // A line holds at most one payload plus its wrapper; anything longer is refused unread.
        var splitter = LineSplitter(maxLineBytes: loaded.limits.maxPayloadBytes * 6 + 65_536)
        var failed = 0
        var lineNumber = 0
        func emit(_ piece: LineSplitter.Piece) {
            lineNumber += 1
            let result: Result<String, BadInput>
            switch piece {
            case .line(let bytes): result = renderer.render(line: bytes)
            case .tooLong: result = .failure(BadInput("oversize", "the line is longer than any payload this route accepts (limits.max_payload_bytes: \(loaded.limits.maxPayloadBytes))"))
            }
            switch result {
            case .success(let prompt):
                print(jsonString(prompt))
            case .failure(let bad):
                failed += 1
                print("null")
                eprint("bitnetd prompt: line \(lineNumber): \(bad.code): \(bad.detail)")
            }
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            for piece in splitter.push(chunk[0..<n]) { emit(piece) }
        }
        for piece in splitter.finish() { emit(piece) }
        if failed > 0 {
            eprint("bitnetd prompt: \(failed) of \(lineNumber) line\(lineNumber == 1 ? "" : "s") failed")
            throw ExitCode(1)
        }
    }
}

/// One stdin line → the message the daemon would have received → `Router.prepare`.
struct PromptRenderer {
    let route: RouteConfig
    let router: Router
    let wrapped: Bool

    init(route: RouteConfig, maxPayloadBytes: Int, wrapped: Bool) {
        self.route = route
        router = Router(routes: [route], maxPayloadBytes: maxPayloadBytes)
        self.wrapped = wrapped
    }

    func render(line: [UInt8]) -> Result<String, BadInput> {
        let parsed: JSON
        do { parsed = try JSON.parse(line) } catch {
            return .failure(BadInput("not_json", "the line is not JSON: \(error)"))
        }
        var payloadValue = parsed
        var topic = route.topic
        var rawPayload: [UInt8]? = line
        if wrapped {
            guard case .object(let o) = parsed, let p = o["payload"] else {
                return .failure(BadInput("wrong_type", "the line must be {\"payload\": …, \"topic\": \"…\"}\(route.prompt.readsTopic ? " (the route's templates read {{topic.N}})" : "")"))
            }
            if let extra = o.keys.first(where: { $0 != "payload" && $0 != "topic" }) {
                return .failure(BadInput("wrong_type", "unexpected key '\(extra)' beside \"payload\" and \"topic\""))
            }
            switch o["topic"] {
            case nil: break
            case .string(let t)?:
                if let problem = topicNameProblem(t) { return .failure(BadInput("wrong_type", "\"topic\": \(problem)")) }
                guard topicMatches(filter: route.topic, topic: t) else {
                    return .failure(BadInput("wrong_type", "\"topic\": '\(t)' does not match the route's filter '\(route.topic)'"))
                }
                topic = t
            case let other?:
                return .failure(BadInput("wrong_type", "\"topic\" must be a string, got \(other.typeName)"))
            }
            payloadValue = p
            rawPayload = nil
        }
        let payload: [UInt8]
        switch (route.input, payloadValue) {
        case (.text, .string(let s)):
            payload = Array(s.utf8)
        case (.text, let v):
            return .failure(BadInput("wrong_type", "an `input: text` route's payload is written as a JSON string, got \(v.typeName)"))
        case (.plugin, .object):
            // The daemon hands a reading to its routes as its fields, serialized.
            payload = Array(payloadValue.serialized.utf8)
        case (.json, .object):
            payload = rawPayload ?? Array(payloadValue.serialized.utf8)
        case (_, let v):
            return .failure(BadInput("wrong_type", "payload must be a JSON object, got \(v.typeName)"))
        }
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        for part in route.prompt.parts + route.outputTopic.parts {
            if case .topicLevel(let n) = part, n < levels.count, levels[n] == "+" || levels[n] == "#" {
                return .failure(BadInput("missing_field", "the route reads {{topic.\(n)}}, which its filter '\(route.topic)' leaves open; give the line a \"topic\""))
            }
        }
        return router.prepare(route: route, message: MQTTMessage(topic: topic, payload: payload)).map(\.prompt)
    }
}
