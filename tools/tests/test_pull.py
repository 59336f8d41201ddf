"""`bitnetd pull` against a local HTTPS server (never the internet): redirects, X-Linked-Etag,
resume after a cut with a Range request, a 200 answer to a Range request, wrong checksums, 404,
HF_TOKEN, a full disk, and a file already in place."""

import hashlib
import http.server
import os
import socketserver
import ssl
import subprocess
import tempfile
import threading

import pytest

from conftest import engine_binary

BODY = bytes((i * 7919) % 251 for i in range(300_000))
SHA = hashlib.sha256(BODY).hexdigest()


class Hub:
    def __init__(self, d):
        self.d = d
        self.requests = []          # (method, path, range header, authorization)
        self.cut_next = False       # close the next GET half-way
        self.ignore_range = False   # answer Range requests with 200 and the whole body
        self.etag = SHA
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.cert = cert
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def route(self):
                hub.requests.append((self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization")))
                if self.path == "/org/model/resolve/main/m.gguf":
                    self.send_response(302)
                    self.send_header("Location", "/cdn/m.gguf")
                    if hub.etag:
                        self.send_header("X-Linked-Etag", f'"{hub.etag}"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if self.path == "/cdn/m.gguf":
                    return BODY
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None

            def do_HEAD(self):
                body = self.route()
                if body is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()

            def do_GET(self):
                body = self.route()
                if body is None:
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and not hub.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                part = body[start:]
                if hub.cut_next:
                    hub.cut_next = False
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(part)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def gets(self):
        return [r for r in self.requests if r[0] == "GET" and r[1].startswith("/cdn/")]


@pytest.fixture
def hub():
    d = tempfile.mkdtemp(prefix="bitnetd-pull-")
    h = Hub(d)
    yield h
    h.server.shutdown()


def pull(hub, *args, token=None):
    env = dict(os.environ, HF_ENDPOINT=f"https://127.0.0.1:{hub.port}", SSL_CERT_FILE=hub.cert)
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([engine_binary(), "pull", *args], capture_output=True, text=True, env=env, timeout=120)


def test_download_verify_and_skip_when_present(hub):
    d = os.path.join(hub.d, "models")
    p = pull(hub, "org/model", "m.gguf", "--dir", d, token="s3cret-token")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == os.path.join(d, "m.gguf")
    assert open(os.path.join(d, "m.gguf"), "rb").read() == BODY
    assert "verified" in p.stderr and not os.path.exists(os.path.join(d, ".m.gguf.partial"))
    # The token went to the endpoint, and is never printed.
    assert any(r[3] == "Bearer s3cret-token" for r in hub.requests)
    assert "s3cret-token" not in p.stdout + p.stderr
    # Already there with the right hash: no second download.
    n = len(hub.gets())
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 0 and "already there" in p.stderr and len(hub.gets()) == n


def test_resume_after_a_cut_and_restart_on_200(hub):
    d = os.path.join(hub.d, "models")
    hub.cut_next = True
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 1, p.stderr
    part = os.path.join(d, ".m.gguf.partial")
    kept = os.path.getsize(part)
    assert 0 < kept < len(BODY) and "run again to resume" in p.stderr
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 0, p.stderr
    assert hub.gets()[-1][2] == f"bytes={kept}-", hub.requests
    assert open(os.path.join(d, "m.gguf"), "rb").read() == BODY
    # A server that ignores Range answers 200 with everything: the partial file restarts.
    os.remove(os.path.join(d, "m.gguf"))
    with open(part, "wb") as f:
        f.write(b"garbage" * 1000)
    hub.ignore_range = True
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 0, p.stderr
    assert open(os.path.join(d, "m.gguf"), "rb").read() == BODY


def test_wrong_checksum_404_and_unverified(hub):
    d = os.path.join(hub.d, "models")
    p = pull(hub, "org/model", "m.gguf", "--dir", d, "--sha256", "0" * 64)
    assert p.returncode == 1 and "expected " + "0" * 64 in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(d, "m.gguf")) and not os.path.exists(os.path.join(d, ".m.gguf.partial"))
    hub.etag = "f" * 64
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 1 and "expected " + "f" * 64 in p.stderr, p.stderr
    p = pull(hub, "org/model", "missing.gguf", "--dir", d)
    assert p.returncode == 1 and "HTTP 404" in p.stderr, p.stderr
    # No --sha256 and no X-Linked-Etag: downloaded, the hash printed, marked not verified.
    hub.etag = None
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 0 and "NOT verified" in p.stderr and SHA in p.stderr, p.stderr


def test_full_disk_and_argument_errors(hub):
    d = os.path.join(hub.d, "full")
    os.makedirs(d)
    os.symlink("/dev/full", os.path.join(d, ".m.gguf.partial"))  # every write fails with ENOSPC
    p = pull(hub, "org/model", "m.gguf", "--dir", d)
    assert p.returncode == 2 and "the disk is full" in p.stderr, p.stderr
    p = pull(hub, "org/model/m.gguf")
    assert p.returncode != 0 and "two arguments" in p.stderr and "bitnetd pull microsoft/bitnet-b1.58-2B-4T-gguf ggml-model-i2_s.gguf" in p.stderr
    p = pull(hub, "org/model", "m.gguf", "--sha256", "xyz")
    assert p.returncode != 0 and "64 hexadecimal digits" in p.stderr
