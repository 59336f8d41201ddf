import Foundation
import Glibc
import Testing
import TestKit

/// `bitnetd prompt` on the built binary: it renders exactly the bytes the daemon feeds the model
/// (checked against the daemon's own `log.level: debug` prompt lines), and refuses what it cannot
/// render with a line number and the right exit status.
@Suite(.serialized) struct PromptCommandTests {
    /// A route in conf.d (merged like the daemon does), a `${VAR}` in a prompt, a topic level,
    /// nested fields, numbers whose formatting matters, and a text route.
    func writeConfig(_ dir: String, port: Int) -> String {
        let config = dir + "/bitnetd.yaml"
        Fixture.write(config, daemonConfig(port: port, routes: """
            routes:
              - name: chat
                topic: chat/in
                input: text
                task: generate
                prompt: "User: {{payload}}\\nBot:"
                max_tokens: 2
                temperature: 0
            """))
        mkdir(dir + "/conf.d", 0o755)
        Fixture.write(dir + "/conf.d/10-door.yaml", """
            routes:
              - name: door
                topic: home/+/door
                prompt: "${SITE}: the {{topic.1}} door is {{state}} ({{t}} °C, {{n.a}}, {{n.list}}, {{flag}}). Answer:"
                labels: [ok, alert]
                output: {topic: "home/{{topic.1}}/door/decision"}
              - name: windowed
                topic: sensors/+
                input: plugin
                window: {count: 3}
                prompt: "{{window.mean.t}}"
                labels: [a, b]
            """)
        return config
    }

    func runPrompt(_ args: [String], stdin: String, env: [String] = ["SITE=Greenhouse \"B\""]) -> (Int32, String, String) {
        let dir = Fixture.tempDir()
        let out = dir + "/out.txt"
        let input = dir + "/in.jsonl"
        Fixture.write(input, stdin)
        let argv = ["/bin/sh", "-c", "\"$@\" <\(input) 2>\(dir)/err.txt", "sh", "/usr/bin/env"] + env + [Fixture.binary, "prompt"] + args
        let rc = Fixture.run(argv, output: out)
        return (rc, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: dir + "/err.txt", encoding: .utf8)) ?? "")
    }

    /// The JSON-string prompts the daemon logged, in job order.
    func loggedPrompts(_ log: String, route: String) -> [String] {
        log.split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "route \(route): prompt ") else { return nil }
            return String(line[r.upperBound...])
        }
    }

    @Test func promptsAreTheDaemonsBytes() throws {
        let broker = try Broker()
        let observer = try Observer(port: broker.port, topics: ["#"])
        let dir = Fixture.tempDir()
        let config = writeConfig(dir, port: broker.port)
        let daemon = DaemonProcess(config: try String(contentsOfFile: config, encoding: .utf8), dir: dir, start: false,
                                   env: ["SITE": "Greenhouse \"B\""])
        daemon.start()
        defer { daemon.stop() }
        #expect(observer.wait(for: 1, on: "bitnetd/status").last?.text == "online", "\(daemon.log)")

        let payloads: [(topic: String, payload: String)] = [
            ("home/front/door", #"{"state":"open","t":21.50,"n":{"a":1e21,"list":[1,2.5,"x"]},"flag":true}"#),
            ("home/back/door", #"{"state":"ajar \u00e9\n","t":-0.1,"n":{"a":0.30000000000000004,"list":[]},"flag":false}"#),
            ("home/garage/door", #"{"flag":null,"state":"shut","t":1E-7,"n":{"a":123456789012345678901234,"list":{"k":[null]}}}"#),
        ]
        for p in payloads { mqttPublish(port: broker.port, topic: p.topic, message: p.payload) }
        mqttPublish(port: broker.port, topic: "chat/in", message: "two\nlines \"quoted\" \u{1F600}")
        mqttPublish(port: broker.port, topic: "home/front/door", message: #"{"state":"open"}"#) // missing t: no job
        #expect(observer.wait(for: 1, on: "home/front/door/decision").count == 1, "\(daemon.log)")
        #expect(observer.wait(for: 1, on: "home/back/door/decision").count == 1, "\(daemon.log)")
        #expect(observer.wait(for: 2, on: "bitnetd/error").count == 2, "\(daemon.log)")
        #expect(observer.wait(for: 1, on: "bitnetd/decision/chat").count == 1, "\(daemon.log)")
        let logged = try #require(Optional(loggedPrompts(daemon.log, route: "door")))
        try #require(logged.count == 2, "the third door payload has flag null → no job; \(daemon.log)")

        // The same payloads through `bitnetd prompt`, wrapped with their topics.
        let lines = payloads.map { #"{"payload":\#($0.payload),"topic":"\#($0.topic)"}"# }.joined(separator: "\n") + "\n"
        let (rc, out, err) = runPrompt(["--config", config, "--route", "door"], stdin: lines)
        let printed = out.split(separator: "\n").map(String.init)
        #expect(rc == 1, "line 3 fails as in the daemon: \(err)")
        #expect(printed.count == 3 && Array(printed.prefix(2)) == logged, "\(printed) vs \(logged)")
        #expect(printed.last == "null" && err.contains("line 3: wrong_type: field 'flag' is null"), "\(err)")

        // A text route: the line is the payload as a JSON string.
        let (rcText, text, _) = runPrompt(["--config", config, "--route", "chat"],
                                          stdin: #""two\nlines \"quoted\" \ud83d\ude00""# + "\n")
        #expect(rcText == 0 && text.split(separator: "\n").map(String.init) == loggedPrompts(daemon.log, route: "chat"),
                "\(text) vs \(daemon.log)")
    }

    @Test func refusalsAndExitCodes() throws {
        let dir = Fixture.tempDir()
        let config = writeConfig(dir, port: 1883)
        // Topic-reading route without a topic: every line is the wrapper form; the default topic
        // (the filter) leaves level 1 open.
        let (rc1, out1, err1) = runPrompt(["--config", config, "--route", "door", "--wrapped"],
                                          stdin: #"{"payload":{"state":"o","t":1,"n":{"a":1,"list":1},"flag":1}}"# + "\n"
                                              + #"{"payload":{},"topic":"other/x/door"}"# + "\n"
                                              + #"{"payload":{},"topic":"home/x/door","extra":1}"# + "\n"
                                              + "{\"payload\":{}}")
        #expect(rc1 == 1 && out1 == "null\nnull\nnull\nnull\n", "\(out1)")
        #expect(err1.contains("line 1: missing_field: the route reads {{topic.1}}, which its filter 'home/+/door' leaves open"), "\(err1)")
        #expect(err1.contains("line 2: wrong_type: \"topic\": 'other/x/door' does not match"), "\(err1)")
        #expect(err1.contains("line 3: wrong_type: unexpected key 'extra'"), "\(err1)")
        #expect(err1.contains("4 of 4 lines failed"), "\(err1)")
        // Unwrapped lines on a topic-reading route are refused, not rendered with a made-up topic.
        let (rc2, _, err2) = runPrompt(["--config", config, "--route", "door"], stdin: #"{"state":"o"}"#)
        #expect(rc2 == 1 && err2.contains("the route's templates read {{topic.N}}"), "\(err2)")
        // A text route given an object; JSON garbage; an over-long line; then a good line still renders.
        let long = "\"" + String(repeating: "a", count: 300_000) + "\""
        let (rc3, out3, err3) = runPrompt(["--config", config, "--route", "chat"], stdin: "{}\nnope\n\(long)\n\"ok\"\n")
        #expect(rc3 == 1 && out3 == "null\nnull\nnull\n\"User: ok\\nBot:\"\n", "\(out3)")
        #expect(err3.contains("line 1: wrong_type") && err3.contains("line 2: not_json") && err3.contains("line 3: oversize"), "\(err3)")
        // Windowed routes, unknown routes: refused; an unreadable config: 2.
        let (rc4, _, err4) = runPrompt(["--config", config, "--route", "windowed"], stdin: "{}\n")
        #expect(rc4 == 1 && err4.contains("reading window"), "\(err4)")
        let (rc5, _, err5) = runPrompt(["--config", config, "--route", "nope"], stdin: "")
        #expect(rc5 == 1 && err5.contains("no route 'nope'"), "\(err5)")
        let (rc6, _, _) = runPrompt(["--config", dir + "/missing.yaml", "--route", "door"], stdin: "")
        #expect(rc6 == 2)
    }
}
