import ConfigTree
import JSONSchema
import Glibc

extension BitnetdConfig {
    static let topKeys = ["model", "mqtt", "queue", "limits", "stats", "log", "routes", "plugins", "homeassistant"]

    /// Every key of the schema by section (`routes` = the keys of one route); `etc/bitnetd.yaml`
    /// documents each of them (checked by a test).
    public static let schemaKeys: [String: [String]] = [
        "": topKeys,
        "model": ["path", "threads", "context", "kernel", "sha256", "pre_tokenizer", "lm_head", "memory_check", "graph", "i2s_block"],
        "mqtt": ["host", "port", "url", "protocol", "client_id", "keepalive", "clean_start", "session_expiry",
                 "username", "password_file", "password_env", "tls", "topic_prefix", "reconnect", "outbox"],
        "mqtt.tls": ["enabled", "ca_file", "cert_file", "key_file", "verify"],
        "mqtt.reconnect": ["min_backoff_s", "max_backoff_s"],
        "mqtt.outbox": ["max_messages", "max_age_s"],
        "queue": ["size", "overflow", "drain_timeout_s", "batch_max"],
        "limits": ["max_payload_bytes", "memory_budget_mb"],
        "stats": ["interval_s"],
        "log": ["level"],
        "routes": routeKeys,
        "routes.output": ["topic", "qos", "retain"],
        "routes.window": ["count", "span_s"],
        "routes.debounce": ["on_change", "min_interval_s"],
        "homeassistant": ["enabled", "prefix", "node_id", "device_name"],
    ]

    /// Reads a merged node tree into a typed configuration, collecting every problem.
    static func decode(_ root: ConfigNode, files: [String], diagnostics context: ConfigDiagnostics) -> BitnetdConfig {
        let top = ConfigReader(root, path: "", parentMark: root.mark, known: topKeys, diagnostics: context)

        let m = top.map("model", known: schemaKeys["model"]!)
        var sha = m.string("sha256")
        if let s = sha {
            let lower = s.lowercased()
            if lower.utf8.count != 64 || !lower.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) {
                context.error(m.markOf("sha256"), m.keyPath("sha256"), "expected 64 hexadecimal digits, got '\(s)'")
            }
            sha = lower
        }
        var model = ModelConfig(
            path: m.string("path", required: true) ?? "",
            threads: m.int("threads", default: 0, range: 0...1024),
            context: m.int("context", default: 0, range: 0...1_048_576),
            kernel: m.has("kernel") ? m.choice("kernel", ["auto", "scalar", "avx2", "avx512", "neon", "dotprod"], default: "auto") : nil,
            sha256: sha,
            preTokenizer: m.has("pre_tokenizer") ? m.choice("pre_tokenizer", ["llama3", "default"], default: "llama3") : nil,
            memoryCheck: m.choice("memory_check", ["refuse", "warn", "off"], default: "refuse"),
            pathMark: m.markOf("path")
        )
        model.lmHead = m.choice("lm_head", ["file", "q8_0"], default: "file")
        model.graph = m.choice("graph", ["auto", "bitnet-b1.58", "bitnet", "llama"], default: "auto")
        model.i2sBlock = Int(m.choice("i2s_block", ["128", "64"], default: "128"))!

        let mqtt = decodeMQTT(top.map("mqtt", known: schemaKeys["mqtt"]!), diagnostics: context)

        let q = top.map("queue", known: schemaKeys["queue"]!)
        let queue = QueueConfig(
            size: q.int("size", default: 64, range: 1...100_000),
            overflow: OverflowPolicy(rawValue: q.choice("overflow", ["drop_oldest", "reject"], default: "reject"))!,
            drainTimeoutS: q.double("drain_timeout_s", default: 10, range: 0...3600),
            batchMax: q.int("batch_max", default: 8, range: 1...64)
        )
        let l = top.map("limits", known: schemaKeys["limits"]!)
        let limits = LimitsConfig(maxPayloadBytes: l.int("max_payload_bytes", default: 65536, range: 1...268_435_455),
                                  memoryBudgetMB: l.int("memory_budget_mb", default: 64, range: 8...65536),
                                  memoryBudgetMark: l.markOf("memory_budget_mb"))
        let s = top.map("stats", known: schemaKeys["stats"]!)
        let stats = StatsConfig(intervalS: s.int("interval_s", default: 60, range: 0...86400))
        let lg = top.map("log", known: schemaKeys["log"]!)
        let log = LogConfig(level: lg.choice("level", ["trace", "debug", "info", "notice", "warning", "error", "critical"], default: "info"))

        var routes: [RouteConfig] = []
        if let n = top.node("routes") {
            if case .sequence(let items) = n.content {
                var names: [String: Mark] = [:]
                for (i, item) in items.enumerated() {
                    guard let r = decodeRoute(item, path: "routes[\(i)]", mqtt: mqtt, diagnostics: context) else { continue }
                    if let first = names[r.name] {
                        let at = first.file == r.mark.file ? "\(first.line):\(first.column)" : first.description
                        context.error(r.mark, "routes[\(i)].name", "duplicate route name '\(r.name)' (first at \(at))")
                    } else {
                        names[r.name] = r.mark
                    }
                    routes.append(r)
                }
            } else {
                context.error(n.mark, "routes", "expected a list of routes, got \(n.kindDescription)")
            }
        }

        var plugins: [PluginConfig] = []
        if let n = top.node("plugins") {
            if case .sequence(let items) = n.content {
                for (i, item) in items.enumerated() {
                    guard case .mapping = item.content else {
                        context.error(item.mark, "plugins[\(i)]", "expected a mapping, got \(item.kindDescription)")
                        continue
                    }
                    if let idNode = item["id"], case .scalar(let id, _) = idNode.content, !idNode.isNull {
                        plugins.append(PluginConfig(id: id, node: item))
                    } else if let idNode = item["id"], !idNode.isNull {
                        context.error(idNode.mark, "plugins[\(i)].id", "expected a string, got \(idNode.kindDescription)")
                    } else {
                        context.error(item.mark, "plugins[\(i)].id", "required key is missing")
                    }
                }
            } else {
                context.error(n.mark, "plugins", "expected a list of plugins, got \(n.kindDescription)")
            }
        }

        let h = top.map("homeassistant", known: schemaKeys["homeassistant"]!)
        let haPrefix = h.string("prefix", default: "homeassistant")
        if let problem = topicNameProblem(haPrefix) {
            context.error(h.markOf("prefix"), h.keyPath("prefix"), problem)
        }
        let defaultNode = String(String.UnicodeScalarView(mqtt.clientID.unicodeScalars.map {
            ($0.isASCII && (($0.value >= 48 && $0.value <= 57) || ($0.value >= 65 && $0.value <= 90)
                || ($0.value >= 97 && $0.value <= 122) || $0 == "_" || $0 == "-")) ? $0 : "_"
        }))
        let nodeID = h.string("node_id", default: defaultNode)
        if nodeID.isEmpty || !nodeID.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 || $0 == 45 }) {
            context.error(h.markOf("node_id"), h.keyPath("node_id"), "expected letters, digits, '_' and '-', got '\(nodeID)'")
        }
        let homeAssistant = HomeAssistantConfig(enabled: h.bool("enabled", default: false), prefix: haPrefix,
                                                nodeID: nodeID, deviceName: h.string("device_name", default: "bitnetd \(nodeID)"))

        var marks: [String: Mark] = ["model.path": model.pathMark]
        for r in routes { if let m = r.modelMark { marks["routes.\(r.name).model"] = m } }
        if let mn = top.node("mqtt") {
            if let n = mn["password_file"] { marks["mqtt.password_file"] = n.mark }
            if let tn = mn["tls"] {
                for k in ["ca_file", "cert_file", "key_file"] { if let n = tn[k] { marks["mqtt.tls." + k] = n.mark } }
            }
        }
        return BitnetdConfig(model: model, mqtt: mqtt, queue: queue, limits: limits, stats: stats, log: log,
                             routes: routes, homeAssistant: homeAssistant, plugins: plugins, files: files, fileMarks: marks)
    }

    static func decodeMQTT(_ m: ConfigReader, diagnostics context: ConfigDiagnostics) -> MQTTConfig {
        var host = m.string("host", default: "localhost")
        var port = m.int("port", default: 1883, range: 1...65535)
        var tlsFromURL = false
        if let url = m.string("url") {
            if m.has("host") || m.has("port") {
                context.error(m.markOf("url"), m.keyPath("url"), "set either url or host/port, not both")
            }
            if let parsed = parseBrokerURL(url) {
                host = parsed.host
                port = parsed.port
                tlsFromURL = parsed.tls
            } else {
                context.error(m.markOf("url"), m.keyPath("url"),
                              "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got '\(url)'")
            }
        }
        var proto = MQTTProtocol.v5
        if let p = m.string("protocol") {
            switch p {
            case "5", "5.0", "v5": proto = .v5
            case "3.1.1", "311", "4", "v3.1.1": proto = .v311
            default: context.error(m.markOf("protocol"), m.keyPath("protocol"), "expected 5 or 3.1.1, got '\(p)'")
            }
        }
        var hostname = [UInt8](repeating: 0, count: 256)
        // Through an explicit buffer pointer: Swift 6.0.3 passes `&hostname` (a [UInt8] to a
        // `char *` parameter) as the address of the array variable, and gethostname then
        // overwrites the array reference (SIGBUS on aarch64, SIGSEGV on x86_64).
        _ = hostname.withUnsafeMutableBytes { gethostname($0.baseAddress!.assumingMemoryBound(to: CChar.self), 255) }
        let defaultID = "bitnetd-" + String(decoding: hostname.prefix { $0 != 0 }, as: UTF8.self)

        let t = m.map("tls", known: schemaKeys["mqtt.tls"]!)
        let caFile = t.string("ca_file")
        let tls = TLSConfig(
            enabled: t.bool("enabled", default: tlsFromURL || caFile != nil || t.has("cert_file")),
            caFile: caFile,
            certFile: t.string("cert_file"),
            keyFile: t.string("key_file"),
            verify: t.bool("verify", default: true)
        )
        if (tls.certFile == nil) != (tls.keyFile == nil) {
            let key = tls.certFile == nil ? "cert_file" : "key_file"
            context.error(t.mark, t.keyPath(key), "cert_file and key_file must be set together")
        }
        if m.has("password_file") && m.has("password_env") {
            context.error(m.markOf("password_env"), m.keyPath("password_env"), "set either password_file or password_env, not both")
        }
        let prefix = m.string("topic_prefix", default: "bitnetd")
        if let problem = topicNameProblem(prefix) {
            context.error(m.markOf("topic_prefix"), m.keyPath("topic_prefix"), problem)
        }
        let r = m.map("reconnect", known: schemaKeys["mqtt.reconnect"]!)
        let minB = r.int("min_backoff_s", default: 1, range: 1...3600)
        let maxB = r.int("max_backoff_s", default: 60, range: 1...86400)
        if maxB < minB {
            context.error(r.markOf("max_backoff_s"), r.keyPath("max_backoff_s"), "expected at least min_backoff_s (\(minB)), got \(maxB)")
        }
        let ob = m.map("outbox", known: schemaKeys["mqtt.outbox"]!)
        let outboxMax = ob.int("max_messages", default: 1000, range: 1...100_000)
        let outboxAge = ob.double("max_age_s", default: 600, range: 1...604_800)
        let clientID = m.string("client_id", default: defaultID)
        if clientID.isEmpty || clientID.utf8.count > 65535 {
            context.error(m.markOf("client_id"), m.keyPath("client_id"), "expected a non-empty client id")
        }
        return MQTTConfig(
            host: host, port: port, protocolVersion: proto, clientID: clientID,
            keepalive: m.int("keepalive", default: 60, range: 5...65535),
            cleanStart: m.bool("clean_start", default: false),
            sessionExpiry: m.int("session_expiry", default: 86400, range: 0...Int(UInt32.max)),
            username: m.string("username"),
            passwordFile: m.string("password_file"),
            passwordEnv: m.string("password_env"),
            tls: tls, topicPrefix: prefix,
            reconnectMinS: minB, reconnectMaxS: max(minB, maxB),
            outboxMaxMessages: outboxMax, outboxMaxAgeS: outboxAge
        )
    }

    static let routeKeys = [
        "name", "topic", "shared_group", "qos", "input", "prompt", "task", "labels", "min_confidence",
        "max_tokens", "temperature", "stop", "output", "error_topic", "response_topics", "window", "debounce",
        "model", "schema", "chat",
    ]

    static func decodeRoute(_ node: ConfigNode, path: String, mqtt: MQTTConfig, diagnostics context: ConfigDiagnostics) -> RouteConfig? {
        let r = ConfigReader(node, path: path, parentMark: node.mark, known: routeKeys, diagnostics: context)
        guard r.isValid else { return nil }
        if node.isNull {
            context.error(node.mark, path, "expected a route mapping, got null")
            return nil
        }
        let name = r.string("name", required: true) ?? "route\(path)"
        if r.has("name"), let problem = routeNameProblem(name) {
            context.error(r.markOf("name"), r.keyPath("name"), problem)
        }
        let topic = r.string("topic", required: true) ?? "#"
        if r.has("topic"), let problem = topicFilterProblem(topic) {
            context.error(r.markOf("topic"), r.keyPath("topic"), problem)
        }
        let group = r.string("shared_group")
        if let g = group, g.isEmpty || g.contains("/") || g.contains("+") || g.contains("#") {
            context.error(r.markOf("shared_group"), r.keyPath("shared_group"), "a group name cannot be empty or contain '/', '+' or '#'")
        }
        let input = RouteInput(rawValue: r.choice("input", ["json", "text", "plugin"], default: "json"))!
        if input == .plugin && r.has("shared_group") {
            context.error(r.keyMarkOf("shared_group"), r.keyPath("shared_group"), "a plugin route reads local readings, not MQTT; it takes no shared_group")
        }
        var window: WindowConfig?
        if r.has("window") {
            let w = r.map("window", known: schemaKeys["routes.window"]!)
            if input != .plugin {
                context.error(r.keyMarkOf("window"), r.keyPath("window"), "windows are for routes fed by plugin readings (input: plugin)")
            }
            let count: Int? = w.has("count") ? w.int("count", default: 1, range: 1...10_000) : nil
            let span: Double? = w.has("span_s") ? w.double("span_s", default: 60, range: 0.001...31_536_000) : nil
            if w.isValid && count == nil && span == nil {
                context.error(r.markOf("window"), r.keyPath("window"), "a window needs count, span_s or both")
            }
            if count != nil || span != nil { window = WindowConfig(count: count, spanS: span) }
        }
        var debounce: DebounceConfig?
        if r.has("debounce") {
            let d = r.map("debounce", known: schemaKeys["routes.debounce"]!)
            if input != .plugin {
                context.error(r.keyMarkOf("debounce"), r.keyPath("debounce"), "debounce is for routes fed by plugin readings (input: plugin)")
            }
            let minInterval: Double? = d.has("min_interval_s") ? d.double("min_interval_s", default: 0, range: 0...86_400) : nil
            debounce = DebounceConfig(onChange: d.bool("on_change", default: false), minIntervalS: minInterval)
            if d.isValid && !debounce!.onChange && minInterval == nil {
                context.error(r.markOf("debounce"), r.keyPath("debounce"), "set on_change: true, min_interval_s or both")
            }
        }
        let task = RouteTask(rawValue: r.choice("task", ["decide", "generate", "extract"], default: "decide"))!

        var prompt = Template(parts: [], source: "")
        if let p = r.string("prompt", required: true) {
            switch Template.parse(p) {
            case .success(let t):
                prompt = t
                if input == .text && t.readsFields {
                    context.error(r.markOf("prompt"), r.keyPath("prompt"), "a text route has no JSON fields; use {{payload}}")
                }
                if t.readsWindow && window == nil {
                    context.error(r.markOf("prompt"), r.keyPath("prompt"),
                                  "{{window.…}} needs a reading window on the route: input: plugin and window: {count: N} and/or {span_s: S}")
                }
            case .failure(let e):
                context.error(r.markOf("prompt"), r.keyPath("prompt"), e.message)
            }
        }

        var labels: [String] = []
        if task == .decide {
            if let l = r.stringList("labels") {
                labels = l
                if l.count < 2 {
                    context.error(r.markOf("labels"), r.keyPath("labels"), "expected at least 2 labels, got \(l.count)")
                }
                var seen = Set<String>()
                for label in l {
                    if label.isEmpty {
                        context.error(r.markOf("labels"), r.keyPath("labels"), "labels cannot be empty")
                    } else if !seen.insert(label).inserted {
                        context.error(r.markOf("labels"), r.keyPath("labels"), "label '\(label)' is listed twice")
                    }
                    if label == "unsure" && r.has("min_confidence") {
                        context.error(r.markOf("labels"), r.keyPath("labels"), "'unsure' is the answer below min_confidence; pick another label name")
                    }
                }
            } else if !r.has("labels") {
                r.missing("labels")
            }
        } else if r.has("labels") {
            context.error(r.keyMarkOf("labels"), r.keyPath("labels"), "labels are used only by task: decide")
        }

        var schema: JSONSchema?
        if task == .extract {
            if let n = r.node("schema") {
                switch RouteSchema.load(n) {
                case .success(let s): schema = s
                case .failure(let f): context.error(f.mark, r.keyPath("schema"), f.message)
                }
            } else {
                r.missing("schema")
            }
        } else if r.has("schema") {
            context.error(r.keyMarkOf("schema"), r.keyPath("schema"), "schema is used only by task: extract")
        }
        if let s = schema, r.int("max_tokens", default: 64, range: 1...32768) < s.minimumBytes {
            context.error(r.has("max_tokens") ? r.markOf("max_tokens") : r.keyMarkOf("schema"), r.keyPath("max_tokens"),
                          "max_tokens \(r.int("max_tokens", default: 64, range: 1...32768)) is below the schema's shortest output, \(s.minimumBytes) bytes (a token per byte at worst)\(r.has("max_tokens") ? "" : " (64 is the default)")")
        }

        let chat = r.bool("chat", default: false)
        if r.has("chat") && task == .decide {
            context.error(r.keyMarkOf("chat"), r.keyPath("chat"), "chat is used by task: generate and extract")
        }

        let o = r.map("output", known: schemaKeys["routes.output"]!)
        var output = Template(parts: [.text(mqtt.topicPrefix + "/decision/"), .route], source: mqtt.topicPrefix + "/decision/{{route}}")
        if let t = o.string("topic") {
            switch Template.parse(t) {
            case .success(var tmpl):
                // In an extract route {{value.F}} reads the generated object's property F.
                var valueProblem: String?
                if task == .extract {
                    tmpl = Template(parts: tmpl.parts.map { part in
                        guard case .field(let path) = part, path.first == "value" else { return part }
                        guard path.count == 2 else {
                            valueProblem = "{{\(path.joined(separator: "."))}}: an output topic reads a top-level property, {{value.F}}"
                            return part
                        }
                        if let problem = Self.valueLevelProblem(schema, property: path[1]) { valueProblem = problem }
                        return .value(path[1])
                    }, source: tmpl.source)
                }
                let ok = tmpl.parts.allSatisfy {
                    switch $0 {
                    case .text(let s): return !s.contains("+") && !s.contains("#")
                    case .topicLevel, .route, .value: return true
                    default: return false
                    }
                }
                if let problem = valueProblem {
                    context.error(o.markOf("topic"), o.keyPath("topic"), problem)
                } else if ok { output = tmpl } else {
                    context.error(o.markOf("topic"), o.keyPath("topic"),
                                  task == .extract
                                      ? "an output topic may use only {{topic.N}}, {{route}} and {{value.F}}, and no '+' or '#'"
                                      : "an output topic may use only {{topic.N}} and {{route}}, and no '+' or '#'")
                }
            case .failure(let e):
                context.error(o.markOf("topic"), o.keyPath("topic"), e.message)
            }
        }
        let errorTopic = r.string("error_topic", default: mqtt.errorTopic)
        if r.has("error_topic"), let problem = topicNameProblem(errorTopic) {  // the default is checked with topic_prefix
            context.error(r.markOf("error_topic"), r.keyPath("error_topic"), problem)
        }

        var responseTopics: [String]?
        if let list = r.stringList("response_topics") {
            if input == .plugin {
                context.error(r.keyMarkOf("response_topics"), r.keyPath("response_topics"), "a plugin route has no requests to answer")
            }
            for f in list {
                if let problem = topicFilterProblem(f) ?? (f.hasPrefix("$") ? "a response topic cannot start with '$'" : nil) {
                    context.error(r.markOf("response_topics"), r.keyPath("response_topics"), "'\(f)': \(problem)")
                }
            }
            responseTopics = list
        }
        var routeModel: String?
        if let m = r.string("model") {
            if m.isEmpty {
                context.error(r.markOf("model"), r.keyPath("model"), "expected the path of a GGUF model file, got an empty string")
            } else {
                routeModel = resolve(m, besideFileOf: r.markOf("model"))
            }
        }
        return RouteConfig(
            name: name, topic: topic, sharedGroup: group,
            qos: r.int("qos", default: 1, range: 0...2),
            input: input, prompt: prompt, task: task, labels: labels,
            minConfidence: r.double("min_confidence", default: 0, range: 0...1),
            maxTokens: r.int("max_tokens", default: 64, range: 1...32768),
            temperature: r.double("temperature", default: 0.7, range: 0...5),
            stop: r.stringList("stop") ?? [],
            outputTopic: output,
            outputQoS: o.int("qos", default: 1, range: 0...2),
            retain: o.bool("retain", default: false),
            errorTopic: errorTopic, responseTopics: responseTopics,
            window: window, debounce: debounce,
            model: routeModel, modelMark: routeModel == nil ? nil : r.markOf("model"), schema: schema, chat: chat,
            mark: node.mark
        )
    }

    /// Why `{{value.F}}` cannot be an output-topic level, or nil: F must be a top-level property
    /// of an object schema whose values are an `enum`/`const` of strings or integers, each a valid
    /// topic level (non-empty, no '/', '+', '#' or NUL, not starting with '$').
    static func valueLevelProblem(_ schema: JSONSchema?, property: String) -> String? {
        guard let schema else { return nil }  // the schema's own error is reported
        guard let values = schema.topicLevelValues(of: property) else {
            return "{{value.\(property)}}: '\(property)' must be a required top-level property whose schema is an enum or const of strings or integers"
        }
        for v in values where v.isEmpty || v.contains("/") || v.contains("+") || v.contains("#") || v.utf8.contains(0) || v.hasPrefix("$") {
            return "{{value.\(property)}}: the value '\(v)' cannot be a topic level (empty, '/', '+', '#', NUL or a leading '$')"
        }
        return nil
    }

    /// A relative path written in a configuration file is relative to that file's directory
    /// (`/etc/bitnetd/conf.d/greenhouse.yaml` + `models/x.gguf` → `/etc/bitnetd/conf.d/models/x.gguf`).
    static func resolve(_ path: String, besideFileOf mark: Mark) -> String {
        if path.hasPrefix("/") { return path }
        guard let slash = mark.file.lastIndex(of: "/") else { return path }
        return String(mark.file[...slash]) + path
    }

    /// Parses `mqtt://host[:port]`, `mqtts://host[:port]` (also `tcp://`, `ssl://`).
    static func parseBrokerURL(_ url: String) -> (host: String, port: Int, tls: Bool)? {
        let schemes: [(String, Bool, Int)] = [("mqtt://", false, 1883), ("tcp://", false, 1883), ("mqtts://", true, 8883), ("ssl://", true, 8883)]
        for (scheme, tls, defaultPort) in schemes where url.hasPrefix(scheme) {
            var rest = Substring(url.dropFirst(scheme.count))
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            var host = rest
            var port = defaultPort
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { return nil }
                host = rest[rest.index(after: rest.startIndex)..<close]
                let after = rest[rest.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                    port = p
                } else if !after.isEmpty { return nil }
            } else if let colon = rest.lastIndex(of: ":") {
                host = rest[..<colon]
                guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
                port = p
            }
            guard !host.isEmpty, !host.contains("/") else { return nil }
            return (String(host), port, tls)
        }
        return nil
    }
}
