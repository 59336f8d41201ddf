import Dispatch
import Glibc
import JSONValue
import Platform
import SensorPlugins

/// `exec`: an external program that prints readings on stdout, supervised like Telegraf's `execd`.
///
/// The program (`command`, an argv list — no shell) runs with the configured environment and
/// working directory, stdin on `/dev/null`, in its own process group. Each stdout line is one
/// reading (`ReadingLine`: by default JSON, an envelope `{"topic": …, "fields": {…}, "ts": …}` or a
/// flat object of fields). Malformed lines are reported (`bad_line`) and skipped; stderr lines are
/// logged with the plugin name; blank lines are ignored.
///
/// Supervision, step by step, when the program exits or crashes:
/// 1. its remaining output is read and delivered, and what is left of its process group is killed;
/// 2. the exit is reported (`exited`: status or signal, how long it ran, when it restarts);
/// 3. it is started again after a delay that doubles with each consecutive exit, from
///    `restart_min_s` up to `restart_max_s`; a run that lasted at least `restart_max_s` counts as
///    healthy and resets the delay; a program that cannot be started at all (`spawn_failed`) is
///    retried on the same schedule.
/// On `stop()` the group gets SIGTERM, and SIGKILL after `stop_grace_s` if it is still there.
///
/// Threading: all state lives on one private serial queue; one small thread per running child
/// (`ChildProcess`) reads its pipes and waits for its exit and posts both to that queue, so a
/// silent or slow child blocks only its own thread.
public final class ExecPlugin: PushingSensorPlugin, @unchecked Sendable {
    // @unchecked: every `var` below is touched only on `queue`.
    public static let id = "exec"

    public struct Options: Sendable, Equatable {
        public var command: [String]
        /// The child's complete environment (`NAME=value`).
        public var environment: [String]
        public var workingDirectory: String?
        public var format: ReadingLine.Format = .json
        public var topicSuffix: String = ""
        public var restartMin: Double = 1
        public var restartMax: Double = 60
        public var stopGrace: Double = 5
        public var maxLineBytes: Int = 65_536

        public init(command: [String], environment: [String] = currentEnvironment(), workingDirectory: String? = nil) {
            self.command = command
            self.environment = environment
            self.workingDirectory = workingDirectory
        }
    }

    public let settings: PluginSettings
    public let options: Options
    /// Output bytes of the child read from its pipes and not yet parsed, at most (per plugin).
    public static let bytesInFlight = 256 * 1024

    /// Output in flight, the partial stdout line, the line being parsed and its stderr line.
    public var maxBufferedBytes: Int { Self.bytesInFlight + 2 * (options.maxLineBytes + 1) + 2 * 4097 }

    private let queue: DispatchQueue
    private var sink: PluginSink?
    private var stopping = false
    private var child: ChildProcess?
    private var childStarted = 0.0
    private var stdoutLines: LineSplitter
    private var stderrLines: LineSplitter
    /// stderr lines are logged at most `stderrBurst` per `stderrWindow` seconds; the rest are
    /// counted and reported in one line when the next window starts (a chatty or looping program
    /// must not flood the journal).
    public static let stderrBurst = 20
    public static let stderrWindow = 10.0
    private var stderrWindowStart = 0.0
    private var stderrLogged = 0
    private var stderrSuppressed = 0
    private var lineNumber = 0
    private var consecutiveExits = 0
    private var restartGeneration = 0
    /// Callers of `stop()` waiting for the child to be reaped.
    private var stopWaiters: [DispatchSemaphore] = []

    public init(settings: PluginSettings, options: Options) {
        precondition(!options.command.isEmpty)
        self.settings = settings
        self.options = options
        queue = DispatchQueue(label: "bitnetd.exec.\(settings.name)")
        stdoutLines = LineSplitter(maxLineBytes: options.maxLineBytes)
        stderrLines = LineSplitter(maxLineBytes: 4096)
    }

    public static let factory = PluginFactory(
        id: id, summary: "an external program printing one JSON reading per line (Telegraf execd style)",
        defaultInterval: nil
    ) { settings, o in
        let items = o.stringItems("command")
        let command = items?.map(\.value)
        if items == nil { o.error(at: o.mark, path: o.keyPath("command"), "required key is missing") }
        if let items, items.isEmpty { o.error("command", "expected a non-empty list: the program and its arguments") }
        if let program = items?.first, executablePath(program.value) == nil {
            o.error(at: program.mark, path: "\(o.keyPath("command"))[0]",
                    program.value.contains("/") ? "'\(program.value)' is not an executable file"
                        : "'\(program.value)' was not found in PATH (give an absolute path)")
        }
        let inherit = o.bool("inherit_environment", default: true)
        let extra = o.stringMap("environment") ?? []
        for (name, _) in extra where name.isEmpty || name.contains("=") {
            o.error("environment", "'\(name)' is not a valid environment variable name")
        }
        let dir = o.string("working_dir")
        if let dir {
            var st = stat()
            if !dir.hasPrefix("/") {
                o.error("working_dir", "expected an absolute path, got '\(dir)'")
            } else if stat(dir, &st) != 0 || st.st_mode & 0o170000 != 0o040000 {
                o.error("working_dir", "'\(dir)' is not a directory")
            }
        }
        let format = o.choice("format", ReadingLine.Format.allCases.map(\.rawValue), default: "json")
        let suffix = o.string("topic_suffix", default: "")
        if let problem = ReadingLine.topicSuffixProblem(suffix) { o.error("topic_suffix", problem) }
        let restartMin = o.double("restart_min_s", default: 1, range: 0.01...3600)
        let restartMax = o.double("restart_max_s", default: 60, range: 0.01...86_400)
        if restartMax < restartMin {
            o.error("restart_max_s", "must be at least restart_min_s (\(JSON.format(restartMin)))")
        }
        let grace = o.double("stop_grace_s", default: 5, range: 0...300)
        let maxLine = o.int("max_line_bytes", default: 65_536, range: 256...(16 << 20))
        guard let command, !command.isEmpty else { return nil }

        var environment = inherit ? currentEnvironment() : []
        for (name, value) in extra {
            environment.removeAll { $0.hasPrefix(name + "=") }
            environment.append("\(name)=\(value)")
        }
        var options = Options(command: command, environment: environment, workingDirectory: dir)
        options.format = ReadingLine.Format(rawValue: format) ?? .json
        options.topicSuffix = suffix
        options.restartMin = restartMin
        options.restartMax = max(restartMax, restartMin)
        options.stopGrace = grace
        options.maxLineBytes = maxLine
        return ExecPlugin(settings: settings, options: options)
    }

    /// The delay before the n-th consecutive restart (n ≥ 1).
    public func restartDelay(after exits: Int) -> Double {
        min(options.restartMax, options.restartMin * pow(2, Double(min(max(exits, 1), 60) - 1)))
    }

    public func start(_ sink: PluginSink) {
        queue.async { [self] in
            guard !stopping, self.sink == nil else { return }
            self.sink = sink
            spawn()
        }
    }

    public func stop() {
        let done = DispatchSemaphore(value: 0)
        queue.async { [self] in
            stopping = true
            restartGeneration += 1
            guard let child else {
                done.signal()
                return
            }
            stopWaiters.append(done)
            guard stopWaiters.count == 1 else { return }
            sink?.log(.info, "stopping pid \(child.pid) (SIGTERM, SIGKILL after \(JSON.format(options.stopGrace)) s)")
            child.signal(SIGTERM)
            queue.asyncAfter(deadline: .now() + options.stopGrace) { [self] in
                guard let c = self.child, c.pid == child.pid else { return }
                sink?.log(.warning, "pid \(c.pid) did not stop within \(JSON.format(options.stopGrace)) s; sending SIGKILL")
                c.signal(SIGKILL)
            }
        }
        _ = done.wait(timeout: .now() + options.stopGrace + 2)
    }

    // MARK: - On `queue`

    private func spawn() {
        guard !stopping, let sink else { return }
        let started: ChildProcess
        // At most `bytesInFlight` of the child's output is read and not yet parsed: a child that
        // writes faster than its lines are handled waits in its own write() (memory budget,
        // docs/daemon.md).
        let budget = ByteBudget(limit: Self.bytesInFlight)
        do throws(SystemError) {
            started = try ChildProcess.spawn(
                options.command, environment: options.environment, workingDirectory: options.workingDirectory,
                budget: budget,
                onOutput: { [self] stream, bytes in
                    queue.async { [self] in
                        if stream == .stdout { handleStdout(bytes) } else { handleStderr(bytes) }
                        budget.give(bytes.count)
                    }
                },
                onExit: { [self] status in queue.async { [self] in exited(status) } })
        } catch {
            consecutiveExits += 1
            let delay = restartDelay(after: consecutiveExits)
            sink.error(PluginError("spawn_failed", "\(error); retrying in \(JSON.format(delay)) s"))
            scheduleRestart(after: delay)
            return
        }
        child = started
        childStarted = monotonicSeconds()
        lineNumber = 0
        stdoutLines.reset()
        stderrLines.reset()
        sink.log(.info, "started pid \(started.pid): \(options.command.joined(separator: " "))")
    }

    private func handleStdout(_ bytes: [UInt8]) {
        for piece in stdoutLines.push(bytes) { deliver(piece) }
    }

    private func deliver(_ piece: LineSplitter.Piece) {
        guard let sink else { return }
        lineNumber += 1
        switch piece {
        case .line(let line):
            do throws(ReadingLine.Problem) {
                if let r = try ReadingLine.parse(line, format: options.format, defaultSuffix: options.topicSuffix,
                                                 time: wallClock()) {
                    sink.reading(r)
                }
            } catch {
                sink.error(PluginError("bad_line", "stdout line \(lineNumber): \(error.message): '\(excerpt(line))'"))
            }
        case .tooLong(let prefix):
            sink.error(PluginError("bad_line", "stdout line \(lineNumber) is longer than \(options.maxLineBytes) bytes and was skipped: '\(excerpt(prefix, limit: 60))'"))
        }
    }

    private func handleStderr(_ bytes: [UInt8]) {
        for piece in stderrLines.push(bytes) { logStderr(piece) }
    }

    private func logStderr(_ piece: LineSplitter.Piece) {
        if case .line(let line) = piece, line.isEmpty { return }
        let now = monotonicSeconds()
        if now - stderrWindowStart >= Self.stderrWindow {
            if stderrSuppressed > 0 {
                sink?.log(.warning, "stderr: \(stderrSuppressed) more line\(stderrSuppressed == 1 ? "" : "s") not logged (at most \(Self.stderrBurst) every \(Int(Self.stderrWindow)) s)")
            }
            stderrWindowStart = now
            stderrLogged = 0
            stderrSuppressed = 0
        }
        guard stderrLogged < Self.stderrBurst else {
            stderrSuppressed += 1
            return
        }
        stderrLogged += 1
        switch piece {
        case .line(let line): if !line.isEmpty { sink?.log(.warning, "stderr: \(excerpt(line, limit: 1000))") }
        case .tooLong(let prefix): sink?.log(.warning, "stderr: \(excerpt(prefix, limit: 200)) [long line cut]")
        }
    }

    private func exited(_ status: ChildProcess.Status) {
        guard let ended = child else { return }
        // All output was posted to this queue before the exit: only unterminated last lines remain.
        for piece in stdoutLines.finish() { deliver(piece) }
        for piece in stderrLines.finish() { logStderr(piece) }
        if stderrSuppressed > 0 {
            sink?.log(.warning, "stderr: \(stderrSuppressed) more line\(stderrSuppressed == 1 ? "" : "s") not logged (at most \(Self.stderrBurst) every \(Int(Self.stderrWindow)) s)")
            stderrSuppressed = 0
        }
        child = nil
        let ran = monotonicSeconds() - childStarted
        if stopping {
            sink?.log(.info, "pid \(ended.pid) \(status) on stop")
            stopWaiters.forEach { $0.signal() }
            stopWaiters.removeAll()
            return
        }
        if ran >= options.restartMax { consecutiveExits = 0 }
        consecutiveExits += 1
        let delay = restartDelay(after: consecutiveExits)
        sink?.error(PluginError("exited", "pid \(ended.pid) \(status) after \(JSON.format((ran * 10).rounded() / 10)) s; restarting in \(JSON.format(delay)) s"))
        scheduleRestart(after: delay)
    }

    private func scheduleRestart(after delay: Double) {
        restartGeneration += 1
        let generation = restartGeneration
        queue.asyncAfter(deadline: .now() + delay) { [self] in
            guard !stopping, generation == restartGeneration else { return }
            spawn()
        }
    }
}
