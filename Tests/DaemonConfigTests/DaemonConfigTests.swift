import ConfigTree
import DaemonConfig
import Glibc
import Testing
import TestKit

let minimal = """
model:
  path: /models/demo.gguf
routes:
  - name: door
    topic: home/+/door
    prompt: "Door {{state}} at {{topic.1}}. Answer:"
    labels: [ok, alert]

"""

func errors(_ yaml: String, env: [String: String] = [:], file: String = "bitnetd.yaml") -> [String] {
    let dir = TempDir()
    let path = dir.write(file, yaml)
    do {
        _ = try ConfigLoader.load(path: path, environment: { env[$0] })
        return []
    } catch let e as ConfigErrors {
        return e.errors.map { $0.description.replacingPrefix(dir.path + "/", with: "") }
    } catch {
        return ["unexpected: \(error)"]
    }
}

func load(_ yaml: String, env: [String: String] = [:]) throws -> BitnetdConfig {
    let dir = TempDir()
    return try ConfigLoader.load(path: dir.write("bitnetd.yaml", yaml), environment: { env[$0] })
}

extension String {
    func replacingPrefix(_ prefix: String, with r: String) -> String {
        hasPrefix(prefix) ? r + dropFirst(prefix.count) : self
    }
}

@Suite struct ConfigDecodingTests {
    @Test func minimalConfigGetsDefaults() throws {
        let c = try load(minimal)
        #expect(c.model.path == "/models/demo.gguf")
        #expect(c.model.threads == 0)
        #expect(c.mqtt.host == "localhost")
        #expect(c.mqtt.port == 1883)
        #expect(c.mqtt.protocolVersion == .v5)
        #expect(c.mqtt.cleanStart == false)
        #expect(c.mqtt.sessionExpiry == 86400)
        #expect(c.mqtt.topicPrefix == "bitnetd")
        #expect(c.queue.size == 64)
        #expect(c.queue.overflow == .reject)
        #expect(c.limits.maxPayloadBytes == 65536)
        #expect(c.stats.intervalS == 60)
        #expect(c.log.level == "info")
        #expect(c.routes.count == 1)
        let r = c.routes[0]
        #expect(r.task == .decide)
        #expect(r.input == .json)
        #expect(r.qos == 1)
        #expect(r.labels == ["ok", "alert"])
        #expect(r.errorTopic == "bitnetd/error")
        #expect(r.outputTopic.source == "bitnetd/decision/{{route}}")
        #expect(r.subscription == "home/+/door")
        #expect(r.prompt.parts == [.text("Door "), .field(["state"]), .text(" at "), .topicLevel(1), .text(". Answer:")])
    }

    @Test func fullRouteAndMQTT() throws {
        let c = try load("""
        model: {path: /m.gguf, threads: 2, context: 512, kernel: scalar, pre_tokenizer: llama3, lm_head: q8_0}
        mqtt:
          url: mqtts://broker.lan:8884
          protocol: 3.1.1
          client_id: board-7
          username: dev
          password_env: MQTT_PW
          tls: {ca_file: /etc/ca.pem}
          topic_prefix: site/a
          reconnect: {min_backoff_s: 2, max_backoff_s: 30}
        queue: {size: 8, overflow: drop_oldest}
        routes:
          - name: chat
            topic: chat/in
            shared_group: fleet
            input: text
            task: generate
            prompt: "User: {{payload}}"
            max_tokens: 20
            temperature: 0
            stop: ["\\n"]
            output: {topic: "chat/out/{{topic.1}}", qos: 0, retain: true}
            error_topic: chat/err
        """)
        #expect(c.mqtt.host == "broker.lan")
        #expect(c.mqtt.port == 8884)
        #expect(c.mqtt.tls.enabled)
        #expect(c.mqtt.tls.caFile == "/etc/ca.pem")
        #expect(c.mqtt.protocolVersion == .v311)
        #expect(c.mqtt.statusTopic == "site/a/status")
        #expect(c.queue.overflow == .dropOldest)
        #expect(c.queue.batchMax == 8)
        #expect(c.model.lmHead == "q8_0")
        #expect(c.model.preTokenizer == "llama3")
        let r = c.routes[0]
        #expect(r.subscription == "$share/fleet/chat/in")
        #expect(r.task == .generate)
        #expect(r.stop == ["\n"])
        #expect(r.outputQoS == 0)
        #expect(r.retain)
        #expect(r.errorTopic == "chat/err")
        #expect(r.outputTopic.parts == [.text("chat/out/"), .topicLevel(1)])
    }

    @Test func unknownKeyWithSuggestion() {
        #expect(errors(minimal + "mqtt:\n  hots: broker\n") == [
            "bitnetd.yaml:9:3: mqtt.hots: unknown key 'hots'; did you mean 'host'?",
        ])
        #expect(errors(minimal + "colour: red\n") == [
            "bitnetd.yaml:8:1: colour: unknown key 'colour'",
        ])
    }

    @Test func wrongType() {
        #expect(errors(minimal + "mqtt:\n  port: abc\n  clean_start: maybe\n  tls: [1]\n") == [
            "bitnetd.yaml:9:9: mqtt.port: expected an integer, got 'abc'",
            "bitnetd.yaml:10:16: mqtt.clean_start: expected true or false, got 'maybe'",
            "bitnetd.yaml:11:8: mqtt.tls: expected a mapping, got a list",
        ])
        #expect(errors("model: /m.gguf\n") == [
            "bitnetd.yaml:1:8: model: expected a mapping, got '/m.gguf'",
        ])
    }

    @Test func outOfRange() {
        #expect(errors(minimal + "mqtt:\n  port: 0\nqueue:\n  size: 0\n") == [
            "bitnetd.yaml:9:9: mqtt.port: expected 1...65535, got 0",
            "bitnetd.yaml:11:9: queue.size: expected 1...100000, got 0",
        ])
        #expect(errors(minimal.replacingOccurrences("labels: [ok, alert]", "labels: [ok, alert]\n    min_confidence: 1.5")) == [
            "bitnetd.yaml:8:21: routes[0].min_confidence: expected 0...1, got 1.5",
        ])
    }

    @Test func missingRequired() {
        #expect(errors("routes:\n  - name: a\n    topic: t\n    labels: [x, y]\n") == [
            "bitnetd.yaml:1:1: model.path: required key is missing",
            "bitnetd.yaml:2:5: routes[0].prompt: required key is missing",
        ])
        #expect(errors("model:\n  threads: 2\nroutes:\n  - name: a\n    topic: t\n    prompt: p\n") == [
            "bitnetd.yaml:2:3: model.path: required key is missing",
            "bitnetd.yaml:4:5: routes[0].labels: required key is missing",
        ])
    }

    @Test func duplicateKey() {
        #expect(errors(minimal + "mqtt:\n  port: 1883\n  port: 1884\n") == [
            "bitnetd.yaml:10:3: mqtt.port: duplicate key 'port' (first defined at 9:3)",
        ])
    }

    @Test func choicesAndTopics() {
        let yaml = """
        model: {path: /m.gguf, lm_head: q8}
        queue: {overflow: drop_newest, batch_max: 0}
        routes:
          - name: a
            topic: home/#/x
            prompt: "{{a}"
            task: decid
            labels: [x, x]
          - name: a
            topic: t
            prompt: "{{topic.x}}"
            labels: [x]
        """
        #expect(errors(yaml) == [
            "bitnetd.yaml:1:33: model.lm_head: expected one of file, q8_0; got 'q8'; did you mean 'q8_0'?",
            "bitnetd.yaml:2:19: queue.overflow: expected one of drop_oldest, reject; got 'drop_newest'; did you mean 'drop_oldest'?",
            "bitnetd.yaml:2:43: queue.batch_max: expected 1...64, got 0",
            "bitnetd.yaml:5:12: routes[0].topic: '#' must be a whole level and the last one",
            "bitnetd.yaml:6:13: routes[0].prompt: unclosed '{{' in template",
            "bitnetd.yaml:7:11: routes[0].task: expected one of decide, generate, extract; got 'decid'; did you mean 'decide'?",
            "bitnetd.yaml:8:13: routes[0].labels: label 'x' is listed twice",
            "bitnetd.yaml:9:5: routes[1].name: duplicate route name 'a' (first at 4:5)",
            "bitnetd.yaml:11:13: routes[1].prompt: '{{topic.x}}': topic levels are written {{topic.N}} with N = 0, 1, …",
            "bitnetd.yaml:12:13: routes[1].labels: expected at least 2 labels, got 1",
        ])
    }

    @Test func yamlSyntaxError() {
        let e = errors("model:\n  path: [unclosed\n")
        #expect(e.count == 1, "\(e)")
        #expect(e.first?.hasPrefix("bitnetd.yaml:3:1: YAML syntax error: ") == true)
    }

    @Test func allErrorsOfSeveralClassesAreCollected() {
        let e = errors("""
        model:
          path: /m.gguf
          threads: -1
        mqtt:
          prot: 5
          keepalive: x
          keepalive: 9
        """)
        #expect(e == [
            "bitnetd.yaml:3:12: model.threads: expected 0...1024, got -1",
            "bitnetd.yaml:5:3: mqtt.prot: unknown key 'prot'; did you mean 'port'?",
            "bitnetd.yaml:6:14: mqtt.keepalive: expected an integer, got 'x'",
            "bitnetd.yaml:7:3: mqtt.keepalive: duplicate key 'keepalive' (first defined at 6:3)",
        ])
    }

    @Test func pluginsAreKeptOpaque() throws {
        let c = try load(minimal + "plugins:\n  - id: linux-thermal\n    interval_s: 5\n    anything: {goes: here}\n")
        #expect(c.plugins.map(\.id) == ["linux-thermal"])
        #expect(errors(minimal + "plugins:\n  - interval_s: 5\n  - id: [x]\n") == [
            "bitnetd.yaml:9:5: plugins[0].id: required key is missing",
            "bitnetd.yaml:10:9: plugins[1].id: expected a string, got a list",
        ])
    }
}

@Suite struct EnvironmentTests {
    @Test func substitution() throws {
        let c = try load("""
        model:
          path: ${MODEL_DIR}/demo.gguf
          threads: ${THREADS:-3}
        mqtt:
          host: ${BROKER:-localhost}
          username: "${USER_NAME}x"
          client_id: "literal $${NOT_A_VAR}"
        """, env: ["MODEL_DIR": "/srv/models", "BROKER": "", "USER_NAME": "ann"])
        #expect(c.model.path == "/srv/models/demo.gguf")
        #expect(c.model.threads == 3)
        #expect(c.mqtt.host == "localhost")
        #expect(c.mqtt.username == "annx")
        #expect(c.mqtt.clientID == "literal ${NOT_A_VAR}")
    }

    @Test func unsetVariableIsAnError() {
        #expect(errors("model:\n  path: ${NOPE}/m.gguf\n") == [
            "bitnetd.yaml:2:9: model.path: environment variable 'NOPE' is not set (use ${NOPE:-default} for a default)",
        ])
    }

    @Test func substitutedValueIsTypeChecked() {
        #expect(errors(minimal + "mqtt:\n  port: ${PORT}\n", env: ["PORT": "http"]) == [
            "bitnetd.yaml:9:9: mqtt.port: expected an integer, got 'http'",
        ])
    }
}

@Suite struct ConfDTests {
    @Test func laterFilesOverrideKeysAndAppendRoutes() throws {
        let dir = TempDir()
        let main = dir.write("bitnetd.yaml", minimal + "mqtt:\n  host: a\n  port: 1000\n")
        dir.write("conf.d/20-second.yaml", """
        mqtt:
          port: 2000
        routes:
          - name: second
            topic: x/y
            prompt: p
            labels: [a, b]
        """)
        dir.write("conf.d/10-first.yaml", "mqtt:\n  port: 1500\n  keepalive: 30\nlog:\n  level: debug\n")
        dir.write("conf.d/ignored.txt", "not: yaml: at all:")
        let c = try ConfigLoader.load(path: main, environment: { _ in nil })
        #expect(c.files.map { $0.replacingPrefix(dir.path + "/", with: "") } == ["bitnetd.yaml", "conf.d/10-first.yaml", "conf.d/20-second.yaml"])
        #expect(c.mqtt.host == "a")
        #expect(c.mqtt.port == 2000)
        #expect(c.mqtt.keepalive == 30)
        #expect(c.log.level == "debug")
        #expect(c.routes.map(\.name) == ["door", "second"])
    }

    @Test func errorsNameTheFileTheyAreIn() {
        let dir = TempDir()
        let main = dir.write("bitnetd.yaml", minimal)
        dir.write("conf.d/50-bad.yaml", "mqtt:\n  port: 99999\nroutes:\n  - name: door\n    topic: t\n    prompt: p\n    labels: [a, b]\n")
        do {
            _ = try ConfigLoader.load(path: main, environment: { _ in nil })
            Issue.record("expected errors")
        } catch let e as ConfigErrors {
            #expect(e.errors.map { $0.description.replacingPrefix(dir.path + "/", with: "") } == [
                "conf.d/50-bad.yaml:2:9: mqtt.port: expected 1...65535, got 99999",
                "conf.d/50-bad.yaml:4:5: routes[1].name: duplicate route name 'door' (first at \(dir.path)/bitnetd.yaml:4:5)",
            ])
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func unreadableFile() {
        #expect(throws: ConfigUnreadable.self) {
            _ = try ConfigLoader.load(path: "/nonexistent/bitnetd.yaml")
        }
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
