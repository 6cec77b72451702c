"""A real Orthanc with its DICOMweb plugin, on loopback, for the DICOMweb source tests.

``with orthanc() as server:`` installs the Debian packages ``orthanc`` and ``orthanc-dicomweb`` when the
binary is missing (``apt-get update`` first), starts ``Orthanc CONFIG.json`` in a temporary folder on a
free loopback port (the packaged service does not start here), waits until it answers and stops it on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_installed() -> str:
    """Path of the Orthanc binary, installing the packages with apt-get if needed."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    if binary is None or not os.path.exists(PLUGIN):
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "orthanc", "orthanc-dicomweb"], check=True, env=env,
                       capture_output=True)
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    return binary


@dataclass
class OrthancServer:
    """A running Orthanc: its HTTP base URL (the DICOMweb root is ``url + '/dicom-web'``)."""

    url: str

    def upload(self, data: bytes) -> str:
        """Store one DICOM file (REST ``POST /instances``) and return Orthanc's instance id."""
        r = requests.post(f"{self.url}/instances", data=data, timeout=30)
        r.raise_for_status()
        return str(r.json()["ID"])


@contextmanager
def orthanc(timeout_s: float = 60.0) -> Iterator[OrthancServer]:
    """Start Orthanc with DICOMweb on a free loopback port; stop it on exit."""
    binary = ensure_installed()
    with tempfile.TemporaryDirectory(prefix="orthanc-") as tmp:
        port = _free_port()
        config = {
            "Name": "osteolake-test",
            "StorageDirectory": str(Path(tmp) / "db"),
            "IndexDirectory": str(Path(tmp) / "db"),
            "HttpPort": port,
            "HttpBindAddress": "127.0.0.1",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        cfg = Path(tmp) / "orthanc.json"
        cfg.write_text(json.dumps(config))
        log = open(Path(tmp) / "orthanc.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with {proc.returncode}: "
                                       f"{(Path(tmp) / 'orthanc.log').read_text()[-2000:]}")
                try:
                    if requests.get(f"{url}/dicom-web/studies", timeout=2).status_code in (200, 204):
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Orthanc did not answer on {url} within {timeout_s} s")
                time.sleep(0.2)
            yield OrthancServer(url)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
