import ArgumentParser
import DaemonConfig
import GGUF
import Glibc

/// `bitnetd check-config`: validates the configuration without starting anything.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check the configuration and the model file without starting the daemon.",
        discussion: """
        Reads the file and the conf.d/*.yaml files beside it (in name order), reports every problem as \
        FILE:LINE:COL: key.path: message, and checks that the model file exists and is a readable GGUF. \
        Exit status: 0 valid, 1 invalid, 2 the configuration cannot be read.
        """
    )

    @Option(name: .long, help: "The configuration file.")
    var config: String = ConfigLoader.defaultPath

    func run() throws {
        let loaded: BitnetdConfig
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch let e as ConfigErrors {
            printErr(e.description)
            printErr("\(config): \(e.errors.count) error\(e.errors.count == 1 ? "" : "s")")
            throw ExitCode(1)
        } catch {
            printErr("\(error)")
            throw ExitCode(2)
        }
        do {
            let file = try GGUFFile(path: loaded.model.path)
            if let arch = file.architecture, !GGUFFile.bitnetArchitectures.contains(arch), arch != "llama" {
                printErr("\(loaded.model.pathMark): model.path: '\(loaded.model.path)' has architecture '\(arch)', not a BitNet model")
                throw ExitCode(1)
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            printErr("\(loaded.model.pathMark): model.path: cannot use '\(loaded.model.path)': \(error)")
            throw ExitCode(1)
        }
        print("\(loaded.files.joined(separator: ", ")): OK (\(loaded.routes.count) routes, \(loaded.plugins.count) plugins)")
    }
}

func printErr(_ s: String) {
    var bytes = Array((s + "\n").utf8)
    bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
