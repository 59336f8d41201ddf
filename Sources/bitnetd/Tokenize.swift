import ArgumentParser
import BitNet
import GGUF
import Platform

/// `bitnetd tokenize`: the token ids (and pieces) a model's own tokenizer gives a text — to check a
/// prompt, compare with another tokenizer, or find a label's tokens. Reads only the file's
/// metadata, so vocabulary-only GGUFs work too.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text with a model's tokenizer.",
        discussion: """
        Without --json: the ids on one line, separated by single spaces. With --json: one line \
        {"ids":[…],"pieces":[…]}, pieces[i] being token i exactly as stored in the file \
        (tokenizer.ggml.tokens, so Ġ and <0x0A> stay visible). BOS is added when the file says so \
        (tokenizer.ggml.add_bos_token), unless --no-bos. Exit status: 0 ok, 1 bad input (e.g. a \
        --file that is not UTF-8), 2 the model cannot be read.
        """)

    @Option(help: "Path of the GGUF model file (a vocabulary-only file is enough).")
    var model: String

    @Option(help: "The text to tokenize.")
    var text: String?

    @Option(help: "Read the text from this file, byte for byte (it must be UTF-8).")
    var file: String?

    @Flag(help: "Do not add BOS, whatever the file says.")
    var noBos = false

    @Flag(help: "Tokenize special-token strings such as <|eot_id|> as plain text instead of as their ids.")
    var noSpecial = false

    @Option(help: "Pre-tokenizer: llama3, default (bitnet.cpp parity) or gpt2, or a tokenizer.ggml.pre name. Default: from the file.")
    var preTokenizer: String?

    @Flag(help: "Print {\"ids\":[…],\"pieces\":[…]} instead of the bare ids.")
    var json = false

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text and --file") }
        if let p = preTokenizer, PreTokenizer(rawValue: p) == nil && PreTokenizer(ggmlName: p) == nil {
            throw ValidationError("unknown pre-tokenizer '\(p)' (llama3, default, gpt2, falcon3)")
        }
    }

    func run() throws {
        let input: String
        if let text {
            input = text
        } else {
            let bytes: [UInt8]
            do { bytes = try readFile(file!, maxBytes: 64 << 20) } catch {
                eprint("error: \(error)")
                throw ExitCode(1)
            }
            guard bytes.count <= 64 << 20 else {
                eprint("error: \(file!): larger than 64 MiB")
                throw ExitCode(1)
            }
            guard let s = String(validating: bytes, as: UTF8.self) else {
                eprint("error: \(file!): not valid UTF-8")
                throw ExitCode(1)
            }
            input = s
        }
        let tokenizer: Tokenizer
        do {
            let pre = preTokenizer.flatMap { PreTokenizer(rawValue: $0) ?? PreTokenizer(ggmlName: $0) }
            tokenizer = try Tokenizer(file: GGUFFile(path: model), override: pre)
        } catch {
            eprint("error: \(error)")
            throw ExitCode(2)
        }
        let ids = tokenizer.encode(input, addSpecial: !noBos, parseSpecial: !noSpecial)
        if json {
            let pieces = ids.map { jsonString(tokenizer.tokens[Int($0)]) }.joined(separator: ",")
            print("{\"ids\":[\(ids.map(String.init).joined(separator: ","))],\"pieces\":[\(pieces)]}")
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }
}
