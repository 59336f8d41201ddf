import ConfigTree
import JSONSchema
import JSONValue
import Platform

/// The `schema:` of an extract route: a JSON Schema written inline in YAML (a mapping) or the path
/// of a `.json` file (relative to the file the key is in), compiled when the configuration is read
/// so that a bad schema is a configuration error with a position.
/// A schema file for the command line (`generate --schema`): the compiled schema, or the problem
/// as one sentence naming the file.
public func loadSchemaFile(_ path: String) throws -> JSONSchema {
    switch RouteSchema.loadFile(path, writtenAt: Mark(file: "", line: 0, column: 0)) {
    case .success(let s): return s
    case .failure(let f): throw SchemaFileError(description: f.message)
    }
}

public struct SchemaFileError: Error, CustomStringConvertible {
    public var description: String
}

enum RouteSchema {
    /// The schema file's size limit (a schema is small; a huge file is a mistake).
    static let maxFileBytes = 1 << 20

    struct Failure: Error {
        var mark: Mark
        var message: String
    }

    static func load(_ node: ConfigNode) -> Result<JSONSchema, Failure> {
        switch node.content {
        case .mapping:
            let json = toJSON(node)
            do {
                return .success(try JSONSchema.compile(json))
            } catch {
                return .failure(Failure(mark: mark(of: error.pointer, in: node), message: error.message + (error.pointer.isEmpty ? "" : " (at \(error.pointer))")))
            }
        case .scalar(let path, _) where !node.isNull && !path.isEmpty:
            return loadFile(path, writtenAt: node.mark)
        default:
            return .failure(Failure(mark: node.mark, message: "expected a JSON Schema (a mapping) or the path of a .json file, got \(node.kindDescription)"))
        }
    }

    static func loadFile(_ path: String, writtenAt mark: Mark) -> Result<JSONSchema, Failure> {
        let resolved = BitnetdConfig.resolve(path, besideFileOf: mark)
        let bytes: [UInt8]
        do {
            bytes = try readFile(resolved, maxBytes: maxFileBytes + 1)
        } catch {
            return .failure(Failure(mark: mark, message: "cannot read '\(resolved)': \(error)"))
        }
        guard bytes.count <= maxFileBytes else {
            return .failure(Failure(mark: mark, message: "'\(resolved)' is larger than \(maxFileBytes >> 20) MiB"))
        }
        let json: JSON
        do {
            json = try JSON.parse(bytes)
        } catch {
            return .failure(Failure(mark: mark, message: "'\(resolved)' is not JSON: \(error)"))
        }
        do {
            return .success(try JSONSchema.compile(json))
        } catch {
            return .failure(Failure(mark: mark, message: "'\(resolved)': \(error)"))
        }
    }

    /// YAML → JSON: plain scalars that read as numbers, booleans or null become those; everything
    /// else is a string. Mappings keep their order (property order is output order).
    static func toJSON(_ node: ConfigNode) -> JSON {
        switch node.content {
        case .mapping(let entries):
            return .object(JSONObject(entries.map { (key: $0.key, value: toJSON($0.value)) }))
        case .sequence(let items):
            return .array(items.map(toJSON))
        case .scalar(let s, let plain):
            guard plain else { return .string(s) }
            if node.isNull { return .null }
            switch s {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            default: break
            }
            if let d = Double(s), d.isFinite, s.first.map({ $0 == "-" || $0 == "+" || $0 == "." || $0.isNumber }) ?? false {
                return .number(d)
            }
            return .string(s)
        }
    }

    /// The mark of the node a JSON pointer names (or of the deepest node on its way).
    static func mark(of pointer: String, in node: ConfigNode) -> Mark {
        var current = node
        for raw in pointer.split(separator: "/", omittingEmptySubsequences: true) {
            let key = unescapePointerToken(raw)
            switch current.content {
            case .mapping(let entries):
                guard let e = entries.last(where: { $0.key == key }) else { return current.mark }
                current = e.value
            case .sequence(let items):
                guard let i = Int(key), i >= 0, i < items.count else { return current.mark }
                current = items[i]
            case .scalar:
                return current.mark
            }
        }
        return current.mark
    }
}

/// `~1` → `/`, `~0` → `~` (RFC 6901).
func unescapePointerToken(_ token: Substring) -> String {
    var out = ""
    var it = token.makeIterator()
    while let c = it.next() {
        if c == "~" {
            switch it.next() {
            case "1": out.append("/")
            case "0": out.append("~")
            case let other?: out.append("~"); out.append(other)
            case nil: out.append("~")
            }
        } else {
            out.append(c)
        }
    }
    return out
}
