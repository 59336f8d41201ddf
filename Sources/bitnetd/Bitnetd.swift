import ArgumentParser

@main
struct Bitnetd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bitnetd",
        abstract: "Run ternary (BitNet b1.58) language models on this device and answer MQTT events with decisions.",
        discussion: """
        The daemon is `bitnetd run`; the other subcommands inspect and exercise a model file directly. \
        Set BITNETD_KERNEL=scalar|avx2|avx512|neon|dotprod to force a kernel path.
        """,
        version: "0.1.0",
        subcommands: [Run.self, CheckConfig.self, Prompt.self, Inspect.self, Tokenize.self, Pull.self, Selftest.self, Generate.self, Decide.self, Logits.self,
                      Bench.self, Dev.self]
    )
}
