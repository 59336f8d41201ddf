import ConfigTree
import DaemonConfig
import Glibc
import JSONSchema
import Testing
import TestKit

/// `task: extract` routes: the schema inline or from a file, its errors at their position, and the
/// rules for `{{value.F}}` in output topics and for `max_tokens`.
@Suite struct ExtractRouteConfigTests {
    static let head = """
        model:
          path: /models/demo.gguf
        routes:
          - name: cmd
            topic: cmd/+
            input: text
            prompt: "Request: {{payload}}\\nCommand: "
            task: extract
            max_tokens: 48

        """

    @Test func inlineSchemaInYAMLKeepsPropertyOrderAndTypes() throws {
        let c = try load(Self.head + """
                schema:
                  type: object
                  properties:
                    house: {type: integer, minimum: 1, maximum: 12}
                    action: {enum: [ventilate, heat, "1"]}
                    level: {type: number, exclusiveMaximum: 100}
                  required: [house, action]
                output: {topic: "greenhouse/{{value.action}}/{{route}}"}
            """)
        let schema = try #require(c.routes[0].schema)
        let m = SchemaMatcher(schema: schema)
        let ok = m.step(m.initial, Array(#"{"house":2,"action":"1","level":99.5}"#.utf8))
        #expect(m.isComplete(ok), "the YAML '1' stays the string \"1\"; the numbers are numbers")
        #expect(schema.minimumBytes == #"{"house":1,"action":"1"}"#.utf8.count)
        #expect(c.routes[0].outputTopic.readsValue)
    }

    @Test func schemaFileRelativeToItsConfigFile() throws {
        let dir = TempDir()
        dir.write("conf.d/schemas/cmd.json", #"{"type":"object","properties":{"on":{"type":"boolean"}},"required":["on"]}"#)
        let main = dir.write("bitnetd.yaml", "model: {path: /m.gguf}\n")
        dir.write("conf.d/10-cmd.yaml", """
            routes:
              - name: cmd
                topic: cmd
                input: text
                prompt: "{{payload}}"
                task: extract
                schema: schemas/cmd.json
            """)
        let c = try ConfigLoader.load(path: main, environment: { _ in nil })
        #expect(c.routes[0].schema?.minimumBytes == #"{"on":true}"#.utf8.count)
    }

    @Test func errorsPointIntoTheSchema() {
        // An unknown keyword inside the inline schema: its own line and column.
        #expect(errors(Self.head + """
                schema:
                  type: object
                  properties:
                    level: {type: integer, pattern: "^1"}
            """) == ["bitnetd.yaml:13:41: routes[0].schema: unknown or unsupported keyword 'pattern' (not supported for generation) (at /properties/level/pattern)"])
        #expect(errors(Self.head + "    schema: {type: object, properties: {a: {type: strin}}}\n")
                == ["bitnetd.yaml:10:51: routes[0].schema: unknown type 'strin' (object, array, string, integer, number, boolean, null) (at /properties/a/type)"])
        // A file that is missing or not JSON: the key's position and the file.
        let missing = errors(Self.head + "    schema: nope.json\n")
        #expect(missing.count == 1 && missing[0].hasPrefix("bitnetd.yaml:10:13: routes[0].schema: cannot read '") && missing[0].contains("nope.json"), "\(missing)")
        // Missing schema, schema on another task, max_tokens below the shortest output.
        #expect(errors(Self.head) == ["bitnetd.yaml:4:5: routes[0].schema: required key is missing"])
        #expect(errors(minimal + "    schema: {type: boolean}\n") == ["bitnetd.yaml:8:5: routes[0].schema: schema is used only by task: extract"])
        #expect(errors(Self.head.replacingOccurrences(of: "max_tokens: 48", with: "max_tokens: 5") + "    schema: {enum: [abcdef]}\n")
                == ["bitnetd.yaml:9:17: routes[0].max_tokens: max_tokens 5 is below the schema's shortest output, 8 bytes (a token per byte at worst)"])
    }

    @Test func valueLevelsInOutputTopics() {
        let schema = """
                schema:
                  properties:
                    room: {enum: [kitchen, "a/b", hall]}
                    n: {type: integer}
                    kind: {const: 7}
                    opt: {enum: [x, y]}
                  required: [room, n, kind]

            """
        func topicError(_ topic: String) -> [String] {
            errors(Self.head + schema + "    output: {topic: \"\(topic)\"}\n")
        }
        #expect(topicError("house/{{value.kind}}") == [], "an integer const is a level")
        #expect(topicError("house/{{value.room}}").first?.hasSuffix("{{value.room}}: the value 'a/b' cannot be a topic level (empty, '/', '+', '#', NUL or a leading '$')") == true)
        #expect(topicError("house/{{value.n}}").first?.hasSuffix("'n' must be a required top-level property whose schema is an enum or const of strings or integers") == true)
        #expect(topicError("house/{{value.opt}}").first?.contains("required") == true, "an optional property may be missing")
        #expect(topicError("house/{{value.kind.x}}").first?.hasSuffix("an output topic reads a top-level property, {{value.F}}") == true)
        #expect(topicError("house/{{state}}").first?.hasSuffix("an output topic may use only {{topic.N}}, {{route}} and {{value.F}}, and no '+' or '#'") == true)
    }
}
