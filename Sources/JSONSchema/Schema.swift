import JSONValue

/// A JSON Schema, compiled for constrained generation (the subset in docs/extract.md).
///
/// Nodes live in one array and refer to each other by index, so `$ref` recursion is a cycle of
/// indices, not of values. `minBytes[i]` is the length of the shortest compact instance of node i
/// — what closing a half-written value costs at least — so a generator can stop in time.
public struct JSONSchema: Sendable, Equatable {
    public struct Property: Sendable, Equatable {
        public var name: String
        /// `"name":`, JSON-escaped — the bytes that introduce the property.
        public var keyBytes: [UInt8]
        public var node: Int
        public var required: Bool
    }

    public struct Bounds: Sendable, Equatable {
        public var minimum: Double?
        public var maximum: Double?
        public var exclusiveMinimum = false
        public var exclusiveMaximum = false
        /// Integers only.
        public var multipleOf: Int64?

        func admits(_ v: Double) -> Bool {
            if let lo = minimum, exclusiveMinimum ? !(v > lo) : !(v >= lo) { return false }
            if let hi = maximum, exclusiveMaximum ? !(v < hi) : !(v <= hi) { return false }
            return true
        }
    }

    public enum Node: Sendable, Equatable {
        /// Any JSON value (a schema with no constraint).
        case any
        case object([Property])
        case array(items: Int, minItems: Int, maxItems: Int?)
        case string(minLength: Int, maxLength: Int?)
        case integer(Bounds)
        case number(Bounds)
        case boolean
        case null
        /// `enum` / `const`: the compact serializations of the allowed values.
        case literals([[UInt8]], values: [JSON])
        case anyOf([Int])
        /// A `$ref` before it is resolved (never left in a compiled schema).
        case ref(String)
    }

    public internal(set) var nodes: [Node]
    public let root: Int
    public internal(set) var minBytes: [Int]

    /// The shortest output this schema allows, in bytes (the least `max_tokens` it needs: every
    /// vocabulary has a token per byte, so a budget of this many tokens can always finish).
    public var minimumBytes: Int { minBytes[root] }

    /// Required top-level properties of an object root whose schema is an `enum`/`const` of strings or
    /// integers — the ones an output topic may read (`{{value.F}}`); the values serialized as
    /// topic levels.
    public func topicLevelValues(of property: String) -> [String]? {
        guard case .object(let props) = nodes[root], let p = props.first(where: { $0.name == property }), p.required else { return nil }
        guard case .literals(_, let values) = nodes[p.node] else { return nil }
        var out: [String] = []
        for v in values {
            switch v {
            case .string(let s): out.append(s)
            case .number(let d) where d == d.rounded() && abs(d) < 1e15: out.append(JSON.format(d))
            default: return nil
            }
        }
        return out
    }
}

/// A problem in a schema: the JSON pointer of the offending keyword and a sentence.
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// JSON pointer into the schema, e.g. `/properties/level/minimum` ("" = the root).
    public var pointer: String
    public var message: String
    public var description: String { pointer.isEmpty ? message : "\(pointer): \(message)" }
}

extension JSONSchema {
    static let annotations: Set<String> = ["title", "description", "$schema", "$id", "$comment", "examples", "default"]
    static let typeNames = ["object", "array", "string", "integer", "number", "boolean", "null"]

    /// Compiles `schema`; every problem is reported, the first one thrown (they are ordered by
    /// position in the schema).
    public static func compile(_ schema: JSON) throws(SchemaError) -> JSONSchema {
        var c = Compiler(rootSchema: schema)
        let root: Int
        do { root = try c.compile(schema, pointer: "") } catch { throw error }
        try c.resolveRefs()
        var s = JSONSchema(nodes: c.nodes, root: root, minBytes: [])
        s.computeMinBytes()
        if s.minBytes[root] >= Int.max / 4 {
            throw SchemaError(pointer: "", message: "the schema allows no finite value (a $ref cycle every instance must follow)")
        }
        return s
    }

    /// Shortest compact instance of each node, by fixed-point iteration (recursion through
    /// `$ref` converges because every cycle adds bytes).
    mutating func computeMinBytes() {
        let inf = Int.max / 4
        minBytes = Array(repeating: inf, count: nodes.count)
        var changed = true
        while changed {
            changed = false
            for i in nodes.indices {
                let v = minBytesOf(i)
                if v < minBytes[i] {
                    minBytes[i] = v
                    changed = true
                }
            }
        }
    }

    private func minBytesOf(_ i: Int) -> Int {
        let inf = Int.max / 4
        func add(_ a: Int, _ b: Int) -> Int { a >= inf || b >= inf ? inf : a + b }
        switch nodes[i] {
        case .any: return 1
        case .object(let props):
            var total = 2
            var n = 0
            for p in props where p.required {
                total = add(total, add(p.keyBytes.count, minBytes[p.node]))
                n += 1
            }
            return add(total, max(0, n - 1))
        case .array(let items, let minItems, _):
            if minItems == 0 { return 2 }
            let each = minBytes[items]
            if each >= inf { return inf }
            return 2 + minItems * each + (minItems - 1)
        case .string(let minLength, _): return 2 + minLength
        case .integer(let b): return NumberText.shortest(b, integer: true)?.count ?? inf
        case .number(let b): return NumberText.shortest(b, integer: false)?.count ?? inf
        case .boolean: return 4
        case .null: return 4
        case .literals(let l, _): return l.map(\.count).min() ?? inf
        case .anyOf(let branches): return branches.map { minBytes[$0] }.min() ?? inf
        case .ref: return inf
        }
    }
}

/// Turns schema JSON into nodes, checking every keyword.
struct Compiler {
    let rootSchema: JSON
    var nodes: [JSONSchema.Node] = []
    /// `$ref` targets compiled so far, by reference string.
    var refTargets: [String: Int] = [:]
    var pendingRefs: [(node: Int, ref: String, pointer: String)] = []

    init(rootSchema: JSON) { self.rootSchema = rootSchema }

    /// Schemas larger than this are refused (generation steps through them byte by byte).
    static let maxNodes = 4096

    mutating func add(_ n: JSONSchema.Node) -> Int {
        nodes.append(n)
        return nodes.count - 1
    }

    func fail(_ pointer: String, _ message: String) -> SchemaError { SchemaError(pointer: pointer, message: message) }

    static func escape(_ key: String) -> String {
        key.replacingOccurrences("~", "~0").replacingOccurrences("/", "~1")
    }

    mutating func compile(_ schema: JSON, pointer: String) throws(SchemaError) -> Int {
        switch schema {
        case .bool(true): return add(.any)
        case .bool(false): throw fail(pointer, "the schema `false` allows no value")
        case .object: break
        default: throw fail(pointer, "a schema must be an object (or true), got \(schema.typeName)")
        }
        guard case .object(let o) = schema else { return add(.any) }
        if nodes.count >= Compiler.maxNodes { throw fail(pointer, "the schema has more than \(Compiler.maxNodes) subschemas") }
        let known: Set<String> = [
            "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
            "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
            "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions",
        ]
        for key in o.keys where !known.contains(key) && !JSONSchema.annotations.contains(key) {
            let hint = ["pattern", "format", "patternProperties", "allOf", "not", "if", "then", "else", "prefixItems",
                        "uniqueItems", "contains", "minProperties", "maxProperties", "dependentRequired"].contains(key)
                ? " (not supported for generation)" : ""
            throw fail(pointer + "/" + Compiler.escape(key), "unknown or unsupported keyword '\(key)'\(hint)")
        }
        if let defs = o["$defs"] ?? o["definitions"], case .object = defs {} else if o["$defs"] != nil || o["definitions"] != nil {
            throw fail(pointer + "/$defs", "$defs must be an object of schemas")
        }
        if let ref = o["$ref"] {
            guard case .string(let r) = ref else { throw fail(pointer + "/$ref", "$ref must be a string") }
            let others = o.keys.filter { $0 != "$ref" && $0 != "$defs" && $0 != "definitions" && !JSONSchema.annotations.contains($0) }
            if let k = others.first { throw fail(pointer + "/" + k, "'\(k)' beside $ref is not supported; put it in the referenced schema") }
            let n = add(.ref(r))
            pendingRefs.append((n, r, pointer + "/$ref"))
            return n
        }
        for key in ["anyOf", "oneOf"] {
            guard let v = o[key] else { continue }
            guard case .array(let items) = v, !items.isEmpty else { throw fail(pointer + "/" + key, "\(key) must be a non-empty array of schemas") }
            let others = o.keys.filter { !["anyOf", "oneOf", "$defs", "definitions"].contains($0) && !JSONSchema.annotations.contains($0) }
            if let k = others.first { throw fail(pointer + "/" + k, "'\(k)' beside \(key) is not supported; put it in each branch") }
            if o["anyOf"] != nil && o["oneOf"] != nil { throw fail(pointer + "/oneOf", "use anyOf or oneOf, not both") }
            var branches: [Int] = []
            for (i, item) in items.enumerated() { branches.append(try compile(item, pointer: "\(pointer)/\(key)/\(i)")) }
            return add(.anyOf(branches))
        }
        // Types: written, or implied by the keywords present.
        var types: [String]
        switch o["type"] {
        case nil:
            let implied: [(String, [String])] = [
                ("object", ["properties", "required", "additionalProperties"]), ("array", ["items", "minItems", "maxItems"]),
                ("string", ["minLength", "maxLength"]),
                ("number", ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]),
            ]
            types = implied.filter { t in t.1.contains { o[$0] != nil } }.map(\.0)
            if types.count > 1 { throw fail(pointer, "keywords of several types (\(types.joined(separator: ", "))) without 'type'; add 'type'") }
        case .string(let t)?: types = [t]
        case .array(let ts)?:
            types = []
            for t in ts {
                guard case .string(let s) = t else { throw fail(pointer + "/type", "type names must be strings") }
                types.append(s)
            }
            if types.isEmpty { throw fail(pointer + "/type", "type must not be an empty list") }
        default: throw fail(pointer + "/type", "type must be a string or a list of strings")
        }
        for t in types where !JSONSchema.typeNames.contains(t) {
            throw fail(pointer + "/type", "unknown type '\(t)' (\(JSONSchema.typeNames.joined(separator: ", ")))")
        }
        if o["enum"] != nil || o["const"] != nil {
            if o["enum"] != nil && o["const"] != nil { throw fail(pointer + "/const", "use enum or const, not both") }
            var values: [JSON]
            if let c = o["const"] { values = [c] } else {
                guard case .array(let items)? = o["enum"], !items.isEmpty else { throw fail(pointer + "/enum", "enum must be a non-empty array") }
                values = items
            }
            for (i, v) in values.enumerated() where !types.isEmpty && !types.contains(where: { Compiler.isOfType(v, $0) }) {
                throw fail(pointer + (o["const"] != nil ? "/const" : "/enum/\(i)"), "\(v.serialized) is not of type \(types.joined(separator: " or "))")
            }
            var seen = Set<String>()
            values = values.filter { seen.insert($0.serialized).inserted }
            return add(.literals(values.map { Array($0.serialized.utf8) }, values: values))
        }
        if types.isEmpty { return add(.any) }
        // A keyword must apply to one of the types (with several types each applies to its own).
        let applies: [String: [String]] = [
            "properties": ["object"], "required": ["object"], "additionalProperties": ["object"],
            "items": ["array"], "minItems": ["array"], "maxItems": ["array"],
            "minLength": ["string"], "maxLength": ["string"],
            "minimum": ["integer", "number"], "maximum": ["integer", "number"], "exclusiveMinimum": ["integer", "number"],
            "exclusiveMaximum": ["integer", "number"], "multipleOf": ["integer", "number"],
        ]
        for key in o.keys {
            guard let owners = applies[key], !owners.contains(where: types.contains) else { continue }
            throw fail(pointer + "/" + key, "'\(key)' applies to \(owners.joined(separator: "/")) values, but type is \(types.joined(separator: ", "))")
        }
        var branches: [Int] = []
        for t in types { branches.append(try compileTyped(t, o, pointer: pointer)) }
        return branches.count == 1 ? branches[0] : add(.anyOf(branches))
    }

    static func isOfType(_ v: JSON, _ t: String) -> Bool {
        switch (v, t) {
        case (.object, "object"), (.array, "array"), (.string, "string"), (.bool, "boolean"), (.null, "null"), (.number, "number"): return true
        case (.number(let d), "integer"): return d == d.rounded() && d.isFinite
        default: return false
        }
    }

    func count(_ o: JSONObject, _ key: String, pointer: String) throws(SchemaError) -> Int? {
        guard let v = o[key] else { return nil }
        guard case .number(let d) = v, d >= 0, d == d.rounded(), d <= 1_000_000 else {
            throw fail(pointer + "/" + key, "\(key) must be a whole number from 0 to 1000000")
        }
        return Int(d)
    }

    func number(_ o: JSONObject, _ key: String, pointer: String) throws(SchemaError) -> Double? {
        guard let v = o[key] else { return nil }
        guard case .number(let d) = v, d.isFinite else { throw fail(pointer + "/" + key, "\(key) must be a number") }
        return d
    }

    mutating func compileTyped(_ type: String, _ o: JSONObject, pointer: String) throws(SchemaError) -> Int {
        switch type {
        case "object":
            if let a = o["additionalProperties"], a != .bool(false) {
                throw fail(pointer + "/additionalProperties", "additionalProperties may only be false (generated objects never contain other keys)")
            }
            var required: [String] = []
            if let r = o["required"] {
                guard case .array(let items) = r else { throw fail(pointer + "/required", "required must be an array of names") }
                for (i, item) in items.enumerated() {
                    guard case .string(let s) = item else { throw fail(pointer + "/required/\(i)", "required names must be strings") }
                    required.append(s)
                }
            }
            let requiredSet = Set(required)
            var props: [JSONSchema.Property] = []
            if let p = o["properties"] {
                guard case .object(let members) = p else { throw fail(pointer + "/properties", "properties must be an object") }
                for (name, sub) in members.members {
                    let node = try compile(sub, pointer: pointer + "/properties/" + Compiler.escape(name))
                    props.append(JSONSchema.Property(name: name, keyBytes: Array((JSON.string(name).serialized + ":").utf8),
                                                     node: node, required: requiredSet.contains(name)))
                }
            }
            let names = Set(props.map(\.name))
            if names.count < props.count { throw fail(pointer + "/properties", "a property is listed twice") }
            for (i, r) in required.enumerated() where !names.contains(r) {
                throw fail(pointer + "/required/\(i)", "required property '\(r)' is not in properties")
            }
            return add(.object(props))
        case "array":
            let items = try o["items"].map { (v: JSON) throws(SchemaError) -> Int in try compile(v, pointer: pointer + "/items") } ?? add(.any)
            let minItems = try count(o, "minItems", pointer: pointer) ?? 0
            let maxItems = try count(o, "maxItems", pointer: pointer)
            if let m = maxItems, m < minItems { throw fail(pointer + "/maxItems", "maxItems \(m) is below minItems \(minItems)") }
            return add(.array(items: items, minItems: minItems, maxItems: maxItems))
        case "string":
            let minLength = try count(o, "minLength", pointer: pointer) ?? 0
            let maxLength = try count(o, "maxLength", pointer: pointer)
            if let m = maxLength, m < minLength { throw fail(pointer + "/maxLength", "maxLength \(m) is below minLength \(minLength)") }
            return add(.string(minLength: minLength, maxLength: maxLength))
        case "integer", "number":
            var b = JSONSchema.Bounds()
            b.minimum = try number(o, "minimum", pointer: pointer)
            b.maximum = try number(o, "maximum", pointer: pointer)
            if let e = o["exclusiveMinimum"] {
                if case .bool = e { throw fail(pointer + "/exclusiveMinimum", "exclusiveMinimum is a number (draft 6 and later), not a boolean") }
                let v = try number(o, "exclusiveMinimum", pointer: pointer)!
                if b.minimum == nil || v >= b.minimum! { b.minimum = v; b.exclusiveMinimum = true }
            }
            if let e = o["exclusiveMaximum"] {
                if case .bool = e { throw fail(pointer + "/exclusiveMaximum", "exclusiveMaximum is a number (draft 6 and later), not a boolean") }
                let v = try number(o, "exclusiveMaximum", pointer: pointer)!
                if b.maximum == nil || v <= b.maximum! { b.maximum = v; b.exclusiveMaximum = true }
            }
            if let m = try number(o, "multipleOf", pointer: pointer) {
                guard type == "integer" else { throw fail(pointer + "/multipleOf", "multipleOf is supported for integers only") }
                guard m >= 1, m == m.rounded(), m < 1e15 else { throw fail(pointer + "/multipleOf", "multipleOf must be a positive whole number") }
                b.multipleOf = Int64(m)
            }
            for (k, v) in [("minimum", b.minimum), ("maximum", b.maximum)] where (v.map { abs($0) > 1e15 }) ?? false {
                throw fail(pointer + "/" + k, "bounds beyond ±1e15 are not supported")
            }
            if NumberText.shortest(b, integer: type == "integer") == nil {
                throw fail(pointer, "no \(type) satisfies these bounds")
            }
            return add(type == "integer" ? .integer(b) : .number(b))
        case "boolean":
            return add(.boolean)
        default:
            return add(.null)
        }
    }

    /// `$ref`s point at `#`, `#/$defs/NAME` or `#/definitions/NAME` of the root schema.
    mutating func resolveRefs() throws(SchemaError) {
        var i = 0
        while i < pendingRefs.count {
            let (node, ref, pointer) = pendingRefs[i]
            i += 1
            let target: Int
            if let t = refTargets[ref] {
                target = t
            } else {
                var schema: JSON?
                if ref == "#" {
                    schema = rootSchema
                } else {
                    for prefix in ["#/$defs/", "#/definitions/"] where ref.hasPrefix(prefix) {
                        let name = String(ref.dropFirst(prefix.count)).replacingOccurrences("~1", "/").replacingOccurrences("~0", "~")
                        schema = rootSchema[prefix == "#/$defs/" ? "$defs" : "definitions"]?[name]
                    }
                }
                guard let schema else { throw fail(pointer, "cannot resolve $ref '\(ref)' (supported: #, #/$defs/NAME)") }
                let placeholder = add(.any)
                refTargets[ref] = placeholder
                let compiled = try compile(schema, pointer: String(ref.dropFirst()))
                nodes[placeholder] = .anyOf([compiled])
                target = placeholder
            }
            nodes[node] = .anyOf([target])
        }
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        guard contains(a) else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
