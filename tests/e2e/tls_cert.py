"""A throw-away self-signed certificate for the end-to-end TLS tests.

make_self_signed_cert(directory) -> (cert_path, key_path): a P-256 key and a
certificate valid for one day for 127.0.0.1 and localhost (subject
alternative names, which clients verify), made with the `openssl` command
line tool (Debian package `openssl`, see scripts/install-deps.sh).
"""
import os
import subprocess


def make_self_signed_cert(directory, name="saferoute-test"):
    cert = os.path.join(directory, f"{name}-cert.pem")
    key = os.path.join(directory, f"{name}-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True, timeout=60)
    return cert, key
