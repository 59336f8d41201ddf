import BitNet
import JSONValue
import SensorPlugins

/// The JSON documents of DESIGN.md §8, schema 1. Field names change only with a new schema number.
public enum Payloads {
    public static let schema = 1

    /// `correlation`: the request's correlation data as text when it is UTF-8, else as
    /// `base64:<…>`; null when the request carried none.
    public static func correlationJSON(_ data: [UInt8]?) -> JSON {
        guard let data else { return .null }
        if let s = String(validating: data, as: UTF8.self) { return .string(s) }
        return .string("base64:" + base64(data))
    }

    public static func decision(route: String, inputTopic: String, label: String?, probabilities: [(String, Double)],
                                text: String?, promptTokens: Int, cachedTokens: Int, generatedTokens: Int,
                                latencyMs: Double, model: String, ts: String, correlation: [UInt8]?,
                                extracted: (value: JSON, forced: Int)? = nil) -> JSON {
        var probs = JSONObject()
        for (l, p) in probabilities { probs[l] = .number(round6(p)) }
        var tokens: JSONObject = ["prompt": .number(Double(promptTokens)), "cached": .number(Double(cachedTokens)),
                                  "generated": .number(Double(generatedTokens))]
        var doc: JSONObject = [
            "schema": .number(Double(schema)),
            "route": .string(route),
            "input_topic": .string(inputTopic),
            "label": label.map(JSON.string) ?? .null,
            "probabilities": .object(probs),
            "text": text.map(JSON.string) ?? .null,
        ]
        // Extract routes: the parsed value after the text, and how many output tokens were forced.
        if let extracted {
            doc["value"] = extracted.value
            tokens["forced"] = .number(Double(extracted.forced))
        }
        doc["tokens"] = .object(tokens)
        doc["latency_ms"] = .number(round3(latencyMs))
        doc["model"] = .string(model)
        doc["ts"] = .string(ts)
        doc["correlation"] = correlationJSON(correlation)
        return .object(doc)
    }

    /// `suppressed`: documents of the same (route or plugin, error) left out since the last one
    /// (rate limit, docs/daemon.md); the field is present only when it is not 0.
    public static func error(route: String?, inputTopic: String, error: String, detail: String, ts: String,
                             suppressed: Int = 0) -> JSON {
        var o: JSONObject = [
            "schema": .number(Double(schema)),
            "route": route.map(JSON.string) ?? .null,
            "input_topic": .string(inputTopic),
            "error": .string(error),
            "detail": .string(detail),
            "ts": .string(ts),
        ]
        if suppressed > 0 { o["suppressed"] = .number(Double(suppressed)) }
        return .object(o)
    }

    public static func stats(_ s: StatsSnapshot, models: [(name: String, path: String, routes: [String])] = [],
                             kernel: (path: String, skipped: [String]) = ("", [])) -> JSON {
        .object([
            "schema": .number(Double(schema)),
            "uptime_s": .number(s.uptimeS.rounded()),
            "received": .number(Double(s.received)),
            "decided": .number(Double(s.decided)),
            "errors": .number(Double(s.errors)),
            "dropped": .number(Double(s.dropped)),
            "queue": .number(Double(s.queue)),
            "latency_ms": .object(["p50": .number(round3(s.p50)), "p95": .number(round3(s.p95))]),
            "tokens_per_s": .number(round3(s.tokensPerS)),
            "rss_bytes": .number(Double(s.rssBytes)),
            "dropped_readings": .number(Double(s.droppedReadings)),
            "suppressed_errors": .number(Double(s.suppressedErrors)),
            "outbox": .object(["queued": .number(Double(s.outboxQueued)), "dropped": .number(Double(s.outboxDropped))]),
            "models": .array(models.map { m in
                .object(["name": .string(m.name), "path": .string(m.path), "routes": .array(m.routes.map { .string($0) })])
            }),
            // The kernel path in use; `selftest_failed`: faster paths skipped at start-up.
            "kernel": .object(["path": .string(kernel.path), "selftest_failed": .array(kernel.skipped.map { .string($0) })]),
        ])
    }

    static func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
    static func round6(_ v: Double) -> Double { (v * 1_000_000).rounded() / 1_000_000 }

    static func base64(_ data: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < data.count {
            let b0 = data[i], b1 = i + 1 < data.count ? data[i + 1] : 0, b2 = i + 2 < data.count ? data[i + 2] : 0
            out.append(table[Int(b0 >> 2)])
            out.append(table[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < data.count ? table[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < data.count ? table[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
