"""The real exporter behind its web config's TLS and basic auth, for the tests of clients that read it (`report
--from`, a browser on the status page)."""

from __future__ import annotations

import base64
import signal
import ssl
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import bcrypt
import yaml

from conftest import PROJECT, free_port, wait_for
from web.pki import Pair, Pki

USER, PASSWORD = "alice", "correct horse"


@dataclass
class SecuredExporter:
    url: str  # https://127.0.0.1:PORT
    ca: Path
    log: Path
    client: Optional[Pair] = None  # the client certificate it requires, if any

    def get(self, path: str, password: str = PASSWORD) -> tuple[int, bytes]:
        """GET over TLS verified against the test CA, with basic auth."""
        token = base64.b64encode(f"{USER}:{password}".encode()).decode()
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Basic {token}"})
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.client is not None:
            context.load_cert_chain(self.client.cert, self.client.key)
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


@contextmanager
def secured_exporter(pki: Pki, tmp_path: Path, args: Sequence[str],
                     client_certificates: bool = False) -> Iterator[SecuredExporter]:
    """The exporter with TLS (the test PKI's server certificate) and one basic-auth user, ready; with
    `client_certificates`, it requires one signed by the test CA too."""
    web_yml = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    tls = {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key)}
    if client_certificates:
        tls.update(client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca.cert))
    web_yml.write_text(yaml.safe_dump({"tls_server_config": tls, "basic_auth_users": {USER: hashed}}))
    port = free_port()
    log = tmp_path / "secured-exporter.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "kmem_exporter", f"--web.listen-address=127.0.0.1:{port}",
             f"--web.config.file={web_yml}", *args], stdout=log_file, stderr=subprocess.STDOUT, cwd=PROJECT)
    client = pki.client if client_certificates else None
    exporter = SecuredExporter(f"https://127.0.0.1:{port}", pki.ca.cert, log, client)
    try:
        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            return exporter.get("/-/ready")[0] == 200

        wait_for("the exporter to be ready over TLS", ready, timeout=60, errors=(OSError,))
        yield exporter
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
