/// The trained chat format (spec §5.3): `System: …<|eot_id|>User: …<|eot_id|>Assistant: `.
public enum ChatFormat {
    public static func render(user: String, system: String? = nil) -> String {
        var s = "<|begin_of_text|>"
        if let system, !system.isEmpty { s += "System: " + trim(system) + "<|eot_id|>" }
        s += "User: " + trim(user) + "<|eot_id|>Assistant: "
        return s
    }

    static func trim(_ s: String) -> String {
        var u = Substring(s)
        while let f = u.first, f.isWhitespace { u.removeFirst() }
        while let l = u.last, l.isWhitespace { u.removeLast() }
        return String(u)
    }
}
