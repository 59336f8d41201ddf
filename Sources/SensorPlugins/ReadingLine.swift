import JSONValue

/// The line formats that external programs (`exec`) and log files (`file-tail`) use to hand us
/// readings.
///
/// **JSON** — one object per line, either an envelope
/// `{"topic": "bme280", "fields": {"temperature_c": 21.5, "ok": true}, "ts": 1764427200.5}`
/// (`topic` optional, a relative topic suffix; `ts` optional, seconds since the epoch; no other
/// keys) or a flat object whose members are all fields: `{"temperature_c": 21.5, "ok": true}`.
/// An object with a `fields` member is always read as an envelope.
///
/// **key=value** (logfmt) — `temperature_c=21.5 room="living room" ok=true`: pairs separated by
/// spaces or tabs; a value in double quotes (with `\"` and `\\` escapes) is a string; unquoted
/// `true`/`false` are booleans, unquoted numbers are numbers, anything else is a string.
///
/// Field values must be numbers, strings or booleans; a line with no fields, a nested value, or a
/// topic with wildcards is rejected with a message that says which.
public enum ReadingLine {
    public enum Format: String, Sendable, CaseIterable {
        case json
        case keyValue = "kv"
        /// JSON when the line starts with `{`, key=value otherwise.
        case auto
    }

    /// Why a line is not a reading.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// Parses one line (without its newline). Blank lines return nil; `time` stamps readings that
    /// carry no `ts`.
    public static func parse(_ line: some Collection<UInt8>, format: Format = .auto, defaultSuffix: String = "",
                             time: Double) throws(Problem) -> Reading? {
        let bytes = Array(line)
        guard let first = bytes.firstIndex(where: { !isSpace($0) }) else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Problem("line is not valid UTF-8") }
        let useJSON: Bool
        switch format {
        case .json: useJSON = true
        case .keyValue: useJSON = false
        case .auto: useJSON = bytes[first] == UInt8(ascii: "{")
        }
        if useJSON {
            return try parseJSON(bytes, defaultSuffix: defaultSuffix, time: time)
        }
        return try parseKeyValue(text, defaultSuffix: defaultSuffix, time: time)
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }

    static func parseJSON(_ bytes: [UInt8], defaultSuffix: String, time: Double) throws(Problem) -> Reading {
        let value: JSON
        do {
            value = try JSON.parse(bytes, maxDepth: 8)
        } catch {
            throw Problem("not JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw Problem("expected a JSON object, got \(value.typeName)")
        }
        guard let fieldsValue = object["fields"] else {
            return Reading(topicSuffix: defaultSuffix, fields: try checkedFields(object), timestamp: time)
        }
        for key in object.keys where key != "topic" && key != "fields" && key != "ts" {
            throw Problem("unknown key '\(key)' in a reading (allowed: topic, fields, ts)")
        }
        guard case .object(let fields) = fieldsValue else {
            throw Problem("'fields' must be an object, got \(fieldsValue.typeName)")
        }
        var suffix = defaultSuffix
        if let t = object["topic"] {
            guard case .string(let s) = t else { throw Problem("'topic' must be a string, got \(t.typeName)") }
            if let problem = topicSuffixProblem(s) { throw Problem("'topic': \(problem)") }
            suffix = s
        }
        var timestamp = time
        if let t = object["ts"] {
            guard case .number(let d) = t, d > 0 else {
                throw Problem("'ts' must be a positive number of seconds since the epoch, got \(t.serialized)")
            }
            timestamp = d
        }
        return Reading(topicSuffix: suffix, fields: try checkedFields(fields), timestamp: timestamp)
    }

    static func checkedFields(_ fields: JSONObject) throws(Problem) -> JSONObject {
        if fields.members.isEmpty { throw Problem("a reading needs at least one field") }
        for (key, value) in fields.members {
            if key.isEmpty { throw Problem("a field name cannot be empty") }
            switch value {
            case .number, .string, .bool: continue
            default: throw Problem("field '\(key)' is \(value.typeName); fields must be numbers, strings or booleans")
            }
        }
        return fields
    }

    static func parseKeyValue(_ text: String, defaultSuffix: String, time: Double) throws(Problem) -> Reading {
        var fields = JSONObject()
        let chars = Array(text.unicodeScalars)
        var i = 0
        func isBlank(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\r" || c == "\n" }
        while i < chars.count {
            while i < chars.count, isBlank(chars[i]) { i += 1 }
            if i == chars.count { break }
            let keyStart = i
            while i < chars.count, !isBlank(chars[i]), chars[i] != "=" { i += 1 }
            var key = String.UnicodeScalarView()
            key.append(contentsOf: chars[keyStart..<i])
            guard i < chars.count, chars[i] == "=" else {
                throw Problem("expected key=value, got '\(String(key))'")
            }
            guard !key.isEmpty else { throw Problem("a field name cannot be empty (a '=' without a key)") }
            if key.contains("\"") { throw Problem("a field name cannot contain '\"'") }
            i += 1
            if i < chars.count, chars[i] == "\"" {
                i += 1
                var value = String.UnicodeScalarView()
                var closed = false
                while i < chars.count {
                    let c = chars[i]
                    if c == "\\", i + 1 < chars.count {
                        value.append(chars[i + 1])
                        i += 2
                        continue
                    }
                    if c == "\"" { closed = true; i += 1; break }
                    value.append(c)
                    i += 1
                }
                guard closed else { throw Problem("unterminated quoted value of '\(String(key))'") }
                if i < chars.count, !isBlank(chars[i]) { throw Problem("expected a space after the quoted value of '\(String(key))'") }
                fields[String(key)] = .string(String(value))
            } else {
                let valueStart = i
                while i < chars.count, !isBlank(chars[i]) { i += 1 }
                var raw = String.UnicodeScalarView()
                raw.append(contentsOf: chars[valueStart..<i])
                fields[String(key)] = typedValue(String(raw))
            }
        }
        return Reading(topicSuffix: defaultSuffix, fields: try checkedFields(fields), timestamp: time)
    }

    /// `true`/`false`, a finite decimal number, or the text itself.
    static func typedValue(_ raw: String) -> JSON {
        if raw == "true" { return .bool(true) }
        if raw == "false" { return .bool(false) }
        if let first = raw.utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+")
            || first == UInt8(ascii: ".") || (first >= 0x30 && first <= 0x39),
           let d = Double(raw), d.isFinite {
            return .number(d)
        }
        return .string(raw)
    }

    /// Why a string cannot be a relative topic suffix (nil when it can): no wildcards, no NUL, no
    /// empty levels, no leading or trailing `/`, at most 256 bytes. The empty suffix is allowed.
    public static func topicSuffixProblem(_ s: String) -> String? {
        if s.isEmpty { return nil }
        if s.utf8.count > 256 { return "a topic suffix is limited to 256 bytes" }
        if s.contains("+") || s.contains("#") { return "a topic suffix cannot contain '+' or '#', got '\(s)'" }
        if s.utf8.contains(0) { return "a topic suffix cannot contain NUL" }
        if s.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            return "a topic suffix cannot have empty levels or a leading or trailing '/', got '\(s)'"
        }
        return nil
    }
}

extension Reading {
    /// The MQTT payload of a reading: its fields, then `ts` (the timestamp as the daemon formats
    /// it, e.g. an ISO 8601 string) unless a field is already called `ts`.
    public func payload(ts: JSON) -> JSON {
        var object = fields
        if object["ts"] == nil { object["ts"] = ts }
        return .object(object)
    }
}
