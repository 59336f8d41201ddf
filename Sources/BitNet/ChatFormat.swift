/// Chat formats, chosen from the file's `tokenizer.chat_template` the way llama.cpp classifies a
/// template (substring rules, in llama.cpp's order), so `--chat` and generate routes speak each
/// model's own format. The real templates of Llama3-8B-1.58 and Falcon3/Falcon-E are unverified
/// here (spec model-families §15): the rules are tested on template strings written from the spec.
public enum ChatFormat: String, Sendable, CaseIterable {
    /// BitNet b1.58 2B4T (spec §5.3): `System: …<|eot_id|>User: …<|eot_id|>Assistant: `.
    case bitnet
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` … then the assistant header.
    case llama3
    /// Falcon3 (and Falcon-E via its template text): `<|role|>\ncontent\n` … then `<|assistant|>\n`.
    case falcon3
    /// `<|im_start|>role\ncontent<|im_end|>\n` … then `<|im_start|>assistant\n`.
    case chatml
    /// `<|role|>\ncontent<|end|>\n` … then `<|assistant|>\n`.
    case phi3

    /// The format a template selects; nil for a template none of the rules recognise. No
    /// template at all is the 2B4T format (the published file's own).
    public static func detect(template: String?) -> ChatFormat? {
        guard let t = template, !t.isEmpty else { return .bitnet }
        if ChatFormat(rawValue: t) != nil { return ChatFormat(rawValue: t) }  // a name, as llama.cpp accepts
        if t.contains("<|im_start|>") { return .chatml }
        if t.contains("<|start_header_id|>") && t.contains("<|end_header_id|>") { return .llama3 }
        if t.contains("BITNETAssistant") || (t.contains("Assistant: ") && t.contains("<|eot_id|>")) { return .bitnet }
        if t.contains("<|assistant|>") && t.contains("<|end|>") { return .phi3 }
        if t.contains("<|assistant|>") && t.contains("<|user|>") { return .falcon3 }
        return nil
    }

    /// The prompt: an optional system turn, the user turn, then the opening of the assistant's turn.
    public func render(user: String, system: String? = nil) -> String {
        let sys = system.map(Self.trim).flatMap { $0.isEmpty ? nil : $0 }
        return (self == .bitnet ? "<|begin_of_text|>" : "") + (sys.map { turn("system", $0) } ?? "")
            + turn("user", Self.trim(user)) + assistantOpening
    }

    /// One complete turn of `role` (system or user) in this format.
    private func turn(_ role: String, _ content: String) -> String {
        switch self {
        case .bitnet: return (role == "system" ? "System: " : "User: ") + content + "<|eot_id|>"
        case .llama3: return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content + "<|eot_id|>"
        case .falcon3: return "<|" + role + "|>\n" + content + "\n"
        case .chatml: return "<|im_start|>" + role + "\n" + content + "<|im_end|>\n"
        case .phi3: return "<|" + role + "|>\n" + content + "<|end|>\n"
        }
    }

    private var assistantOpening: String {
        switch self {
        case .bitnet: return "Assistant: "
        case .llama3: return "<|start_header_id|>assistant<|end_header_id|>\n\n"
        case .falcon3, .phi3: return "<|assistant|>\n"
        case .chatml: return "<|im_start|>assistant\n"
        }
    }

    /// The 2B4T format (kept for callers that do not look at a file).
    public static func render(user: String, system: String? = nil) -> String {
        ChatFormat.bitnet.render(user: user, system: system)
    }

    static func trim(_ s: String) -> String {
        var u = Substring(s)
        while let f = u.first, f.isWhitespace { u.removeFirst() }
        while let l = u.last, l.isWhitespace { u.removeLast() }
        return String(u)
    }
}
