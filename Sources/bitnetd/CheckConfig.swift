import ArgumentParser
import BitNet
import ConfigTree
import Daemon
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
            eprint(e.description)
            eprint("\(config): \(e.errors.count) error\(e.errors.count == 1 ? "" : "s")")
            throw ExitCode(1)
        } catch {
            eprint("\(error)")
            throw ExitCode(2)
        }
        var problems: [String] = []
        if case .failure(let e) = PluginSetup.build(loaded) {
            problems += e.errors.map(\.description)
        }
        var models = [(key: "model.path", path: loaded.model.path, mark: loaded.model.pathMark)]
        for r in loaded.routes { if let p = r.model, let m = r.modelMark { models.append(("routes.\(r.name).model", p, m)) } }
        for (key, path, mark) in models {
            do {
                let file = try GGUFFile(path: path)
                if let arch = file.architecture, !BitNetModel.supportedArchitectures.contains(arch) {
                    problems.append("\(mark): \(key): '\(path)' has architecture '\(arch)', which this engine does not run (supported: \(BitNetModel.supportedArchitectures.joined(separator: ", ")))")
                }
            } catch {
                problems.append("\(mark): \(key): cannot use '\(path)': \(error)")
            }
        }
        for (key, path, mark) in loaded.referencedFiles where access(path, R_OK) != 0 && !key.hasSuffix(".model") {
            problems.append("\(mark): \(key): cannot read '\(path)': \(String(cString: strerror(errno)))")
        }
        if let name = loaded.mqtt.passwordEnv, getenv(name) == nil {
            problems.append("\(loaded.files[0]): mqtt.password_env: environment variable \(name) is not set (the daemon will need it)")
        }
        if !problems.isEmpty {
            eprint(problems.joined(separator: "\n"))
            eprint("\(config): \(problems.count) error\(problems.count == 1 ? "" : "s")")
            throw ExitCode(1)
        }
        let extra = loaded.routeModels.filter { $0 != loaded.model.path }.count
        print("\(loaded.files.joined(separator: ", ")): OK (\(loaded.routes.count) routes, \(loaded.plugins.count) plugins\(extra > 0 ? ", \(extra) route model\(extra == 1 ? "" : "s")" : ""))")
    }
}


