"""Certificates and keys made at test time with the `openssl` command line (no key is ever committed)."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import require_tool


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def openssl(*args: str, cwd: Path) -> str:
    result = subprocess.run([require_tool("openssl"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"
    return result.stdout


def _new_key_and_csr(directory: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, csr = directory / f"{name}.key", directory / f"{name}.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", subject, cwd=directory)
    return key, csr


def make_ca(directory: Path, name: str) -> Pair:
    """A self-signed certificate authority."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)
    return Pair(cert, key)


def make_leaf(directory: Path, name: str, ca: Pair, client: bool = False,
              sans: str = "IP:127.0.0.1,DNS:localhost") -> Pair:
    """A server (or client) certificate signed by `ca`, with a random serial so two are never the same."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr = _new_key_and_csr(directory, name, f"/CN={name}")
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"basicConstraints=CA:FALSE\nsubjectAltName={sans}\n"
                          f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
    cert = directory / f"{name}.crt"
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-set_serial", str(secrets.randbits(63)), "-days", "2", "-out", str(cert), "-extfile", str(extensions),
            cwd=directory)
    return Pair(cert, key)


@dataclass(frozen=True)
class Pki:
    """A CA with a server and a client certificate, and a second CA whose client certificate must be refused."""

    ca: Pair
    server: Pair
    client: Pair
    other_ca: Pair
    other_client: Pair


def make_pki(directory: Path) -> Pki:
    ca = make_ca(directory, "ca")
    other_ca = make_ca(directory, "other-ca")
    return Pki(
        ca=ca,
        server=make_leaf(directory, "server", ca),
        client=make_leaf(directory, "client", ca, client=True, sans="DNS:prometheus.example,IP:127.0.0.2"),
        other_ca=other_ca,
        other_client=make_leaf(directory, "other-client", other_ca, client=True, sans="DNS:prometheus.example"),
    )
