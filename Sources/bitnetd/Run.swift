import ArgumentParser
import Daemon
import DaemonConfig

/// `bitnetd run`: the daemon.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon: load the model, connect to the broker, answer events with decisions.",
        discussion: """
        Stops cleanly on SIGTERM or SIGINT (queued jobs are finished or answered with an error, the \
        retained status becomes offline) and re-reads the configuration on SIGHUP (a bad new \
        configuration is reported and the running one kept). Under systemd (Type=notify) it reports \
        READY, RELOADING, STOPPING and watchdog pings through NOTIFY_SOCKET.
        """
    )

    @Option(name: .long, help: "The configuration file; conf.d/*.yaml beside it are merged in.")
    var config: String = ConfigLoader.defaultPath

    func run() throws {
        let code = DaemonRunner.run(configPath: config)
        if code != 0 { throw ExitCode(code) }
    }
}
