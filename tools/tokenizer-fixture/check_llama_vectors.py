#!/usr/bin/env python3
"""Runs llama.cpp's tokenizer test vectors (spec model-families §13.4) through `bitnetd tokenize`.

The vocabularies and vectors ship in the llama-cpp-python sdist on PyPI (vendor/llama.cpp/models/
ggml-vocab-*.gguf with .inp/.out); they are not committed here (the Llama vocabularies carry their
own licences). This script fetches the sdist once into a cache (or uses --sdist), extracts the
vocabularies it checks, and reports, per vocabulary, how many strings tokenize to exactly llama.cpp's
ids (without BOS). Exit 1 if any differs.

    python3 tools/tokenizer-fixture/check_llama_vectors.py [--sdist llama_cpp_python-0.3.36.tar.gz]
        [--vocab llama-spm --vocab llama-bpe] [--bitnetd .build/release/bitnetd]
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request

VERSION = "0.3.36"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bitnetd-vocab-vectors")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def fetch_sdist():
    path = os.path.join(CACHE, f"llama_cpp_python-{VERSION}.tar.gz")
    if os.path.exists(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    meta = json.load(urllib.request.urlopen(f"https://pypi.org/pypi/llama-cpp-python/{VERSION}/json"))
    sdist = [u for u in meta["urls"] if u["packagetype"] == "sdist"][0]
    url = urllib.parse.urljoin(f"https://pypi.org/pypi/llama-cpp-python/{VERSION}/json", sdist["url"])
    print(f"downloading {url}", file=sys.stderr)
    urllib.request.urlretrieve(url, path + ".part")
    import hashlib
    h = hashlib.sha256(open(path + ".part", "rb").read()).hexdigest()
    if h != SHA256:
        sys.exit(f"sdist sha256 {h} ≠ {SHA256}")
    os.rename(path + ".part", path)
    return path


def extract(sdist, vocab):
    out = os.path.join(CACHE, vocab)
    os.makedirs(out, exist_ok=True)
    names = [f"ggml-vocab-{vocab}.gguf", f"ggml-vocab-{vocab}.gguf.inp", f"ggml-vocab-{vocab}.gguf.out"]
    if not all(os.path.exists(os.path.join(out, n)) for n in names):
        with tarfile.open(sdist) as t:
            for n in names:
                member = t.getmember(f"llama_cpp_python-{VERSION}/vendor/llama.cpp/models/{n}")
                with open(os.path.join(out, n), "wb") as f:
                    f.write(t.extractfile(member).read())
    return [os.path.join(out, n) for n in names]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist")
    ap.add_argument("--vocab", action="append")
    ap.add_argument("--bitnetd", default=os.environ.get("BITNETD_BIN", os.path.join(REPO, ".build", "release", "bitnetd")))
    a = ap.parse_args()
    sdist = a.sdist or fetch_sdist()
    failed = False
    for vocab in a.vocab or ["llama-spm", "llama-bpe"]:
        gguf, inp, outp = extract(sdist, vocab)
        texts = open(inp, encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
        expected = open(outp, encoding="utf-8").read().split("\n")
        ok, bad = 0, []
        for text, want in zip(texts, expected):
            p = subprocess.run([a.bitnetd, "tokenize", "--model", gguf, "--no-bos", "--text", text], capture_output=True, text=True)
            got = p.stdout.strip()
            if p.returncode == 0 and got == want.strip():
                ok += 1
            else:
                bad.append((text, want.strip(), got or p.stderr.strip()))
        print(f"{vocab}: {ok}/{len(texts)} strings tokenize to llama.cpp's ids")
        for text, want, got in bad[:10]:
            print(f"  {text!r}: llama.cpp {want} / bitnetd {got}")
        failed |= bool(bad)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
