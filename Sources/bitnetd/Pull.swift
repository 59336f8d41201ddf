import ArgumentParser
import CCurl
import Daemon
import Glibc
import Platform

/// `bitnetd pull REPO FILE`: downloads a model file from the Hugging Face hub (or `HF_ENDPOINT`)
/// over HTTPS with libcurl, resumable, verified against a SHA-256 before it is moved into place.
struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download a model file from the Hugging Face hub, resumably, and verify its SHA-256.",
        discussion: """
        URL: ${HF_ENDPOINT:-https://huggingface.co}/REPO/resolve/REVISION/FILE (redirects followed). \
        The expected SHA-256 is --sha256, else the hub's X-Linked-Etag header (the LFS object id); \
        without either the hash is printed and the file is marked not verified. Data goes to \
        DIR/.FILE.partial, resumed with a Range request after an interruption (a server that \
        answers 200 restarts it), and is renamed into place only when the hash matches; a file \
        already there with the right hash is not downloaded again. TLS uses the system store, or \
        SSL_CERT_FILE / CURL_CA_BUNDLE; HF_TOKEN is sent as a bearer token (never logged; libcurl \
        drops it on redirects to other hosts); proxy variables are honoured. Exit status: 0 ok, \
        1 checksum mismatch or HTTP/transfer error, 2 local I/O error (a full disk is named as such).
        """)

    @Argument(help: "Repository, e.g. microsoft/bitnet-b1.58-2B-4T-gguf.")
    var repo: String

    @Argument(help: "File in the repository, e.g. ggml-model-i2_s.gguf.")
    var file: String?

    @Option(help: "Branch, tag or commit.")
    var revision = "main"

    @Option(help: "Directory to store the file in.")
    var dir = "/var/lib/bitnetd/models"

    @Option(help: "Expected SHA-256 (64 hex digits).")
    var sha256: String?

    func validate() throws {
        guard let file else {
            throw ValidationError("give the repository and the file as two arguments, e.g. `bitnetd pull microsoft/bitnet-b1.58-2B-4T-gguf ggml-model-i2_s.gguf`"
                                  + (repo.split(separator: "/").count > 2 ? " (not '\(repo)')" : ""))
        }
        guard repo.split(separator: "/").count == 2, !repo.contains("..") else {
            throw ValidationError("REPO is owner/name, e.g. microsoft/bitnet-b1.58-2B-4T-gguf")
        }
        guard !file.isEmpty, !file.hasPrefix("/"), !file.split(separator: "/").contains("..") else {
            throw ValidationError("FILE must be a path inside the repository")
        }
        if let h = sha256, h.count != 64 || !h.allSatisfy(\.isHexDigit) {
            throw ValidationError("--sha256 must be 64 hexadecimal digits")
        }
    }

    func run() throws {
        let name = String(file!.split(separator: "/").last!)
        let target = dir + "/" + name
        let partial = dir + "/." + name + ".partial"
        let endpoint = ProcessEnv.get("HF_ENDPOINT").map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? "https://huggingface.co"
        let url = "\(endpoint)/\(repo)/resolve/\(revision)/\(file!)"
        var expected = sha256?.lowercased()

        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        defer { curl_global_cleanup() }

        // The expected hash: --sha256, else the hub's LFS object id (a HEAD request).
        if expected == nil {
            let head = Transfer(url: url, endpointHost: host(of: endpoint))
            let r = head.perform(headOnly: true, to: nil, resumeFrom: 0)
            if r.code != CURLE_OK {
                eprint("bitnetd pull: \(url): \(r.message)")
                throw ExitCode(1)
            }
            if r.status >= 400 {
                eprint("bitnetd pull: \(url): HTTP \(r.status)\(r.status == 401 || r.status == 403 ? " (a gated or private repository needs HF_TOKEN)" : "")")
                throw ExitCode(1)
            }
            expected = head.linkedEtag
        }
        if let e = expected, access(target, F_OK) == 0 {
            if (try? SHA256.hexDigest(ofFile: target)) == e {
                eprint("bitnetd pull: \(target) is already there with SHA-256 \(e)")
                print(target)
                return
            }
            eprint("bitnetd pull: \(target) exists with another SHA-256; downloading it again")
        }
        if mkdirAll(dir) != 0 {
            eprint("bitnetd pull: cannot create \(dir): \(String(cString: strerror(errno)))")
            throw ExitCode(2)
        }
        // Resume what an earlier run left.
        var st = stat()
        let have = stat(partial, &st) == 0 ? Int64(st.st_size) : 0
        guard let out = fopen(partial, have > 0 ? "ab" : "wb") else {
            eprint("bitnetd pull: cannot write \(partial): \(String(cString: strerror(errno)))")
            throw ExitCode(2)
        }
        let t = Transfer(url: url, endpointHost: host(of: endpoint))
        if have > 0 { eprint("bitnetd pull: resuming \(partial) at \(have) bytes") }
        let r = t.perform(headOnly: false, to: out, resumeFrom: have)
        let closeFailed = fclose(out) != 0
        if let e = t.writeErrno ?? (closeFailed ? errno : nil) {
            eprint("bitnetd pull: writing \(partial) failed: \(e == ENOSPC ? "the disk is full" : String(cString: strerror(e)))")
            throw ExitCode(2)
        }
        if r.status == 416 && have > 0 {
            // Nothing left to fetch: the partial file is complete; the hash decides.
        } else if r.code != CURLE_OK {
            eprint("bitnetd pull: \(url): \(r.message) (\(partialSize(partial)) bytes kept in \(partial); run again to resume)")
            throw ExitCode(1)
        } else if r.status >= 400 {
            eprint("bitnetd pull: \(url): HTTP \(r.status)")
            unlink(partial)
            throw ExitCode(1)
        }
        if expected == nil { expected = t.linkedEtag }
        let actual: String
        do { actual = try SHA256.hexDigest(ofFile: partial) } catch {
            eprint("bitnetd pull: cannot read \(partial): \(error)")
            throw ExitCode(2)
        }
        if let e = expected, actual != e {
            eprint("bitnetd pull: SHA-256 of the download is \(actual), expected \(e); \(partial) removed")
            unlink(partial)
            throw ExitCode(1)
        }
        guard rename(partial, target) == 0 else {
            eprint("bitnetd pull: cannot move \(partial) to \(target): \(String(cString: strerror(errno)))")
            throw ExitCode(2)
        }
        if expected == nil {
            eprint("bitnetd pull: warning: \(target) is NOT verified (no --sha256 and no X-Linked-Etag from the server); its SHA-256 is \(actual)")
        } else {
            eprint("bitnetd pull: \(target): SHA-256 \(actual) verified")
        }
        print(target)
    }

    func host(of url: String) -> String {
        var rest = Substring(url)
        if let r = rest.firstRange(of: "://") { rest = rest[r.upperBound...] }
        return String(rest.prefix { $0 != "/" && $0 != ":" })
    }

    func partialSize(_ path: String) -> Int64 {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : 0
    }

    func mkdirAll(_ path: String) -> Int32 {
        var sofar = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            sofar += "/" + part
            if mkdir(sofar, 0o755) != 0 && errno != EEXIST { return -1 }
        }
        return 0
    }
}

/// One libcurl transfer with its callbacks' state.
final class Transfer {
    let url: String
    let endpointHost: String
    var linkedEtag: String?
    var writeErrno: Int32?
    var file: UnsafeMutablePointer<FILE>?
    var status = 0
    let showProgress = isatty(2) == 1
    var lastProgress = 0.0
    var started = 0.0
    var offset: Int64 = 0

    init(url: String, endpointHost: String) {
        self.url = url
        self.endpointHost = endpointHost
    }

    func perform(headOnly: Bool, to file: UnsafeMutablePointer<FILE>?, resumeFrom: Int64) -> (code: CURLcode, status: Int, message: String) {
        guard let c = curl_easy_init() else { return (CURLE_FAILED_INIT, 0, "libcurl could not start") }
        defer { curl_easy_cleanup(c) }
        self.file = file
        offset = resumeFrom
        started = monotonicSeconds()
        var errbuf = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = bn_curl_set_string(c, CURLOPT_URL, url)
        _ = bn_curl_set_long(c, CURLOPT_FOLLOWLOCATION, 1)
        _ = bn_curl_set_long(c, CURLOPT_MAXREDIRS, 10)
        _ = bn_curl_set_string(c, CURLOPT_USERAGENT, "bitnetd-pull/0.1")
        _ = bn_curl_set_long(c, CURLOPT_CONNECTTIMEOUT, 30)
        // A stalled transfer (under 1 KB/s for 60 s) is an error the next run resumes from.
        _ = bn_curl_set_long(c, CURLOPT_LOW_SPEED_LIMIT, 1024)
        _ = bn_curl_set_long(c, CURLOPT_LOW_SPEED_TIME, 60)
        errbuf.withUnsafeMutableBufferPointer { _ = bn_curl_set_pointer(c, CURLOPT_ERRORBUFFER, $0.baseAddress) }
        for name in ["SSL_CERT_FILE", "CURL_CA_BUNDLE"] {
            if let ca = ProcessEnv.get(name) {
                _ = bn_curl_set_string(c, CURLOPT_CAINFO, ca)
                break
            }
        }
        if let token = ProcessEnv.get("HF_TOKEN"), !token.isEmpty {
            // Custom Authorization headers are not sent to other hosts on redirects (libcurl
            // ≥ 7.58), so the token reaches the endpoint only.
            headers = curl_slist_append(headers, "Authorization: Bearer " + token)
            _ = bn_curl_set_pointer(c, CURLOPT_HTTPHEADER, headers)
        }
        _ = bn_curl_set_pointer(c, CURLOPT_HEADERDATA, me)
        _ = bn_curl_set_write(c, CURLOPT_HEADERFUNCTION) { data, size, n, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: size * n), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                t.status = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            } else if line.lowercased().hasPrefix("x-linked-etag:") {
                var v = line.dropFirst("x-linked-etag:".count).trimmingCharacters()
                if v.hasPrefix("W/") { v = String(v.dropFirst(2)) }
                v = v.replacingQuotes()
                if v.count == 64 && v.allSatisfy(\.isHexDigit) { t.linkedEtag = v.lowercased() }
            }
            return size * n
        }
        if headOnly {
            _ = bn_curl_set_long(c, CURLOPT_NOBODY, 1)
        } else {
            // CURLOPT_RANGE, not RESUME_FROM: a server that ignores it answers 200, which the write
            // callback turns into a restart instead of libcurl failing the transfer.
            if resumeFrom > 0 { _ = bn_curl_set_string(c, CURLOPT_RANGE, "\(resumeFrom)-") }
            _ = bn_curl_set_pointer(c, CURLOPT_WRITEDATA, me)
            _ = bn_curl_set_write(c, CURLOPT_WRITEFUNCTION) { data, size, n, user in
                let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
                guard let f = t.file, let data else { return 0 }
                // A 200 to a Range request: the server sends the whole file, so start over.
                if t.status == 200 && t.offset > 0 {
                    if ftruncate(fileno(f), 0) != 0 || fseeko(f, 0, SEEK_SET) != 0 {
                        t.writeErrno = errno
                        return 0
                    }
                    t.offset = 0
                }
                if t.status >= 400 { return size * n }  // an error page: not data
                let w = fwrite(data, size, n, f)
                if w != n || fflush(f) != 0 {
                    t.writeErrno = errno == 0 ? EIO : errno
                    return 0
                }
                return size * n
            }
            if showProgress {
                _ = bn_curl_set_pointer(c, CURLOPT_XFERINFODATA, me)
                _ = bn_curl_set_long(c, CURLOPT_NOPROGRESS, 0)
                _ = bn_curl_set_progress(c) { user, total, now, _, _ in
                    let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
                    let clock = monotonicSeconds()
                    guard clock - t.lastProgress >= 0.5 || (total > 0 && now == total) else { return 0 }
                    t.lastProgress = clock
                    let rate = Double(now) / max(clock - t.started, 1e-3)
                    let all = Double(Int64(total) + t.offset), done = Double(Int64(now) + t.offset)
                    let eta = total > 0 && rate > 0 ? " ETA \(Int((Double(total - now)) / rate)) s" : ""
                    let line = "\r\(Int(done) >> 20) / \(all > 0 ? "\(Int(all) >> 20)" : "?") MiB, \(fmt(rate / 1_048_576)) MiB/s\(eta)   "
                    writeFD(2, line)
                    return 0
                }
            }
        }
        let code = curl_easy_perform(c)
        if showProgress && !headOnly { writeFD(2, "\n") }
        let http = Int(bn_curl_response_code(c))
        if http != 0 { status = http }
        let detail = String(decoding: errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (code, status, detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
    }
}

private extension Substring {
    func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        // "\r\n" is one Character: isNewline catches it.
        while let l = s.last, l == " " || l == "\t" || l.isNewline { s.removeLast() }
        return String(s)
    }
}

private extension String {
    func replacingQuotes() -> String { String(filter { $0 != "\"" }) }
}

/// Environment lookups.
enum ProcessEnv {
    static func get(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}
