import Glibc
import Synchronization

/// A child process in its own process group, with its stdout and stderr on pipes — a thin wrapper
/// over `posix_spawn(3)`, `waitid(2)` and `kill(2)` for the `exec` plugin and `bench --mqtt`.
///
/// Spawn details and why:
/// - an empty signal mask and default dispositions for all signals
///   (`POSIX_SPAWN_SETSIGMASK` + `POSIX_SPAWN_SETSIGDEF`): the daemon blocks SIGTERM/SIGINT in its
///   threads and may ignore SIGPIPE, and a child inherits both, so without this it could not be
///   stopped with SIGTERM and would not die on a closed pipe (platform notes, "libmosquitto");
/// - its own process group (`POSIX_SPAWN_SETPGROUP`, pgid = pid): signals go to the group, so a
///   script's own children (`sh` running `python3`, a `sleep`) are stopped with it and cannot keep
///   the pipes open;
/// - stdin is `/dev/null`; every other descriptor of the daemon is closed in the child
///   (`posix_spawn_file_actions_addclosefrom_np`, glibc ≥ 2.34, looked up at run time because the
///   Swift Glibc module does not export GNU extensions; pipes are `O_CLOEXEC` in any case).
///
/// One dedicated thread per child reads its stdout and stderr (`poll(2)` + `read(2)`) and waits
/// for its exit: libdispatch on Linux has no process sources, and Dispatch read sources on pipes
/// that are closed while a concurrently spawned child still holds them crashed libdispatch's epoll
/// loop in our tests (1 run in ~25). Output is handed to `onOutput` in order, and all of it before
/// `onExit`. When the child exits, the rest of its process group is killed before it is reaped
/// (`waitid(WNOWAIT)` first, so its pid cannot be reused while we still signal the group).
public final class ChildProcess: Sendable {
    public enum Status: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): return "exited with status \(code)"
            case .signaled(let sig): return "was killed by signal \(sig) (\(signalName(sig)))"
            }
        }
    }

    /// Which pipe a chunk of output came from.
    public enum Stream: Sendable, Equatable {
        case stdout
        case stderr
    }

    public let pid: pid_t
    /// Read ends of the child's stdout and stderr (close-on-exec); owned and closed by the thread.
    private let stdoutFD: Int32
    private let stderrFD: Int32
    /// True once the child has been reaped; guards `signal` against pid reuse.
    private let reaped = Mutex(false)
    /// `BITNETD_PROCESS_TREE=<daemon pid>-<n>`: in the environment of the child and of everything
    /// it starts.
    private let mark: String

    /// The environment variable that marks a child's process tree.
    public static let markVariable = "BITNETD_PROCESS_TREE"
    private static let nextMark = Atomic<Int>(1)

    /// Whether the child leads a process group of its own (signals then go to the whole group).
    private let ownGroup: Bool

    private init(pid: pid_t, stdoutFD: Int32, stderrFD: Int32, mark: String, ownGroup: Bool) {
        self.ownGroup = ownGroup
        self.pid = pid
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.mark = mark
    }

    /// SIGKILLs every process that still carries this child's mark — descendants that left its
    /// process group (`setsid`, a double fork) and so escaped the group kill. Found through
    /// `/proc/<pid>/environ` (readable for our own processes); a descendant that clears its
    /// environment is not found (docs/daemon.md "Plugins").
    public func killTree() {
        let needle = Array(mark.utf8) + [0]
        guard let names = try? listDirectory("/proc") else { return }
        for name in names {
            guard let p = pid_t(name), p > 1, p != getpid() else { continue }
            guard let env = try? readFile("/proc/\(name)/environ", maxBytes: 1 << 20) else { continue }
            if contains(env, needle) { kill(p, SIGKILL) }
        }
    }

    private func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        // Entries are NUL-separated; the mark must be a whole entry.
        var start = 0
        while start < hay.count {
            let end = hay[start...].firstIndex(of: 0) ?? hay.count
            if end - start + 1 == needle.count, hay[start..<end].elementsEqual(needle.dropLast()) { return true }
            start = end + 1
        }
        return false
    }

    /// Starts `argv` (`argv[0]` is searched in `PATH` when it has no `/`). `environment` replaces
    /// the child's environment when given (`NAME=value` strings). Throws a `SystemError` naming
    /// `argv[0]` and the errno text (`No such file or directory`, `Permission denied`, …).
    ///
    /// `onOutput` and then `onExit` are called on the child's own thread; they should hand the
    /// data on (e.g. to a queue) and return. With a `budget`, every chunk handed to `onOutput` is
    /// charged to it and the pipes are not read while it is spent: the consumer gives the bytes
    /// back when it has dealt with them, and a child that writes faster blocks in `write()`.
    /// `ownProcessGroup: false` keeps the child in the caller's process group, so a Ctrl-C at the
    /// terminal reaches it too (a helper process that must not outlive an interactive command).
    public static func spawn(_ argv: [String], environment: [String]?, workingDirectory: String?,
                             budget: ByteBudget? = nil, ownProcessGroup: Bool = true,
                             onOutput: @escaping @Sendable (Stream, [UInt8]) -> Void,
                             onExit: @escaping @Sendable (Status) -> Void) throws(SystemError) -> ChildProcess {
        precondition(!argv.isEmpty)
        func fail(_ what: String, _ code: Int32) -> SystemError {
            SystemError("posix_spawn", path: argv[0], detail: what, code: code)
        }
        let out = try makePipe()
        let err: (read: Int32, write: Int32)
        do {
            err = try makePipe()
        } catch {
            close(out.read); close(out.write)
            throw error
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out.write, 1)
        posix_spawn_file_actions_adddup2(&actions, err.write, 2)
        if let closeFrom = GNU.addCloseFrom {
            _ = closeFrom(&actions, 3)
        }
        if let dir = workingDirectory {
            guard let chdir = GNU.addChdir else {
                close(out.read); close(out.write); close(err.read); close(err.write)
                throw SystemError("posix_spawn_file_actions_addchdir_np", path: argv[0],
                                  detail: "working_dir needs glibc 2.29 or newer", code: 0)
            }
            _ = dir.withCString { chdir(&actions, $0) }
        }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        // Every signal back to its default action: dispositions that are ignored stay ignored
        // across exec, and the daemon ignores SIGPIPE (glibc's sigfillset leaves out its internal
        // signals; posix_spawn skips SIGKILL and SIGSTOP).
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
                                              | (ownProcessGroup ? POSIX_SPAWN_SETPGROUP : 0)))

        let cArgv = argv.map { strdup($0) } + [nil]
        // Every descendant inherits this mark, also one that leaves the process group with
        // setsid(): at the end the whole tree is found by it (`killTree`).
        let mark = "\(ChildProcess.markVariable)=\(getpid())-\(ChildProcess.nextMark.add(1, ordering: .relaxed).oldValue)"
        let cEnv = ((environment ?? currentEnvironment()).filter { !$0.hasPrefix(ChildProcess.markVariable + "=") } + [mark])
            .map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid = pid_t()
        let rc: Int32 = cArgv.withUnsafeBufferPointer { a in
            cEnv.withUnsafeBufferPointer { e in
                if argv[0].contains("/") {
                    return posix_spawn(&pid, argv[0], &actions, &attr, a.baseAddress!, e.baseAddress!)
                }
                return posix_spawnp(&pid, argv[0], &actions, &attr, a.baseAddress!, e.baseAddress!)
            }
        }
        close(out.write)
        close(err.write)
        guard rc == 0 else {
            close(out.read); close(err.read)
            throw fail("cannot start", rc)
        }
        for fd in [out.read, err.read] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)  // poll says when; never block in read
        }
        let child = ChildProcess(pid: pid, stdoutFD: out.read, stderrFD: err.read, mark: mark, ownGroup: ownProcessGroup)
        let threadError = startThread {
            child.pump(budget, onOutput)
            child.waitForExit(onExit)
        }
        if threadError != 0 {
            child.signal(SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            close(out.read); close(err.read)
            throw fail("cannot start a wait thread", threadError)
        }
        return child
    }

    /// Sends `sig` to the child's process group; does nothing once the child is reaped.
    public func signal(_ sig: Int32) {
        reaped.withLock { done in
            if !done { kill(ownGroup ? -pid : pid, sig) }
        }
    }

    /// Reads both pipes until both are at end of file. Checks for the child's exit when nothing is
    /// readable for a while: a child that exits while a leftover of its group (or a process that
    /// left the group) holds the pipes open would otherwise keep us here; its group is then killed,
    /// and after 2 s the pipes are abandoned.
    private func pump(_ budget: ByteBudget?, _ onOutput: @Sendable (Stream, [UInt8]) -> Void) {
        var open: [(fd: Int32, stream: Stream)] = [(stdoutFD, .stdout), (stderrFD, .stderr)]
        var buffer = [UInt8](repeating: 0, count: 16_384)
        var exitedAt: Double?
        while !open.isEmpty {
            if let budget, !budget.waitForRoom(timeoutMs: 100) {
                // Spent: leave the data in the pipe (the child blocks when it is full), but still
                // notice an exit whose leftovers keep the pipe open.
                if exitedAt == nil, hasExited() {
                    exitedAt = monotonicSeconds()
                    signal(SIGKILL)
                } else if let t = exitedAt, monotonicSeconds() - t > 2 {
                    break
                }
                continue
            }
            var fds = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), exitedAt == nil ? 500 : 100)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            var finished: [Int32] = []
            for (i, p) in fds.enumerated() where p.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    budget?.charge(n)
                    onOutput(open[i].stream, Array(buffer[0..<n]))
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    finished.append(p.fd)
                }
            }
            for fd in finished {
                close(fd)
                open.removeAll { $0.fd == fd }
            }
            if ready == 0 {
                if let t = exitedAt {
                    if monotonicSeconds() - t > 2 { break }
                } else if hasExited() {
                    exitedAt = monotonicSeconds()
                    signal(SIGKILL)
                }
            }
        }
        for (fd, _) in open { close(fd) }
    }

    /// Whether the child has exited (without reaping it).
    private func hasExited() -> Bool {
        var info = siginfo_t()
        return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid != 0
    }

    private func waitForExit(_ onExit: @Sendable (Status) -> Void) {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 {
            if errno != EINTR { break }
        }
        let status: Status = reaped.withLock { done in
            if ownGroup { kill(-pid, SIGKILL) }
            killTree()
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 {
                if errno != EINTR { break }
            }
            done = true
            // WIFEXITED / WEXITSTATUS / WTERMSIG are macros; these are their glibc definitions.
            if raw & 0x7F == 0 { return .exited((raw >> 8) & 0xFF) }
            return .signaled(raw & 0x7F)
        }
        onExit(status)
    }
}

/// `SIGTERM`, `SIGKILL`, … for messages.
public func signalName(_ sig: Int32) -> String {
    switch sig {
    case SIGHUP: return "SIGHUP"
    case SIGINT: return "SIGINT"
    case SIGQUIT: return "SIGQUIT"
    case SIGILL: return "SIGILL"
    case SIGABRT: return "SIGABRT"
    case SIGBUS: return "SIGBUS"
    case SIGFPE: return "SIGFPE"
    case SIGKILL: return "SIGKILL"
    case SIGSEGV: return "SIGSEGV"
    case SIGPIPE: return "SIGPIPE"
    case SIGALRM: return "SIGALRM"
    case SIGTERM: return "SIGTERM"
    default: return "signal \(sig)"
    }
}

/// The path `posix_spawnp` would run for `program` (a `/` in it: the file itself), if executable.
public func executablePath(_ program: String) -> String? {
    func isExecutableFile(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && st.st_mode & 0o170000 == 0o100000 && access(p, X_OK) == 0
    }
    if program.contains("/") { return isExecutableFile(program) ? program : nil }
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
        let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + program
        if isExecutableFile(candidate) { return candidate }
    }
    return nil
}

/// The daemon's own environment as `NAME=value` strings.
public func currentEnvironment() -> [String] {
    guard let env = GNU.environ?.pointee else { return [] }
    var out: [String] = []
    var p = env
    while let entry = p.pointee {
        out.append(String(cString: entry))
        p += 1
    }
    return out
}

private func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    let rc: Int32
    if let pipe2 = GNU.pipe2 {
        rc = fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress!, O_CLOEXEC) }
    } else {
        rc = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress!) }
        if rc == 0 { for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) } }
    }
    if rc != 0 { throw SystemError("pipe2", detail: "cannot create a pipe", code: errno) }
    return (fds[0], fds[1])
}

/// Starts a detached OS thread with a small stack (a blocking wait must not take a Dispatch
/// worker). Returns 0 or the `pthread_create` error code.
func startThread(_ body: @escaping @Sendable () -> Void) -> Int32 {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attr, 256 * 1024)
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attr, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    if rc != 0 { Unmanaged<Box>.fromOpaque(box).release() }
    return rc
}

/// GNU extensions of glibc that the Swift Glibc module does not export (it is built without
/// `_GNU_SOURCE`), looked up once with `dlsym`. Each is nil on a C library without it.
private struct GNU: @unchecked Sendable {
    // @unchecked: immutable function and data pointers resolved once.
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias Environ = UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>

    static let shared = GNU()
    static var addCloseFrom: AddCloseFrom? { shared.addCloseFrom }
    static var addChdir: AddChdir? { shared.addChdir }
    static var pipe2: Pipe2? { shared.pipe2 }
    static var environ: Environ? { shared.environ }

    let addCloseFrom: AddCloseFrom?
    let addChdir: AddChdir?
    let pipe2: Pipe2?
    let environ: Environ?

    private init() {
        let handle = dlopen(nil, RTLD_NOW)
        func symbol<T>(_ name: String) -> T? {
            guard let p = dlsym(handle, name) else { return nil }
            return unsafeBitCast(p, to: T.self)
        }
        addCloseFrom = symbol("posix_spawn_file_actions_addclosefrom_np")
        addChdir = symbol("posix_spawn_file_actions_addchdir_np")
        pipe2 = symbol("pipe2")
        environ = dlsym(handle, "environ")?.assumingMemoryBound(to: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?.self)
    }
}
