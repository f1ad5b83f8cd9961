"""Security of the sweep's inputs: credentials reach the tracking server as MLflow sends them and
no file; names used as paths stay inside the store; Ray is never handed the environment's secrets."""

from __future__ import annotations

import base64
import os
import http.server
import threading

import pytest

from sweep.tracking.client import check_reachable, redact
from sweep.spec.config import load
from sweep.errors import SweepConfigError


@pytest.fixture()
def auth_server():
    """A /health endpoint that answers 200 only with basic auth alice:S3cret (401 otherwise), on loopback."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization", ""))
            ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"alice:S3cret").decode()
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_password_in_tracking_uri_is_sent_as_basic_auth_not_as_a_host(auth_server):
    address, seen = auth_server
    check_reachable(f"http://alice:S3cret@{address}")
    assert seen == ["Basic " + base64.b64encode(b"alice:S3cret").decode()]


def test_credentials_from_mlflows_environment_variables(auth_server, monkeypatch):
    address, seen = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "S3cret")
    check_reachable(f"http://{address}")
    assert seen[-1] == "Basic " + base64.b64encode(b"alice:S3cret").decode()


def test_unreachable_uri_with_password_is_masked_in_the_error():
    with pytest.raises(ConnectionError) as info:
        check_reachable("http://alice:S3cret@127.0.0.1:9", timeout=2)
    assert "S3cret" not in str(info.value) and "alice:***@127.0.0.1:9" in str(info.value)


def test_redact_masks_userinfo_passwords():
    assert redact("http://alice:S3cret@host:5000/x") == "http://alice:***@host:5000/x"
    assert "S3cret" not in redact("https://u:S3cret@h")


@pytest.mark.parametrize("experiment", ["../escaped", "../../etc/x", "/some/where", "a/../../b", "~/x", "é" * 200])  # 200 é: 400 bytes, no folder name (it left the parent RUNNING)
def test_experiment_names_cannot_leave_the_artifact_folder(experiment):
    raw = {"name": "s", "data": {"source": "digits"}, "search": {"space": {"units": {"type": "int", "low": 1, "high": 2}}},
           "tracking": {"experiment": experiment}}
    with pytest.raises(SweepConfigError) as info:
        load(raw)
    assert info.value.key == "tracking.experiment"


def test_databricks_workspace_paths_stay_allowed():
    raw = {"name": "s", "data": {"source": "digits"}, "search": {"space": {"units": {"type": "int", "low": 1, "high": 2}}},
           "tracking": {"uri": "databricks", "experiment": "/Users/me@example.com/sweeps"}}
    assert load(raw).experiment == "/Users/me@example.com/sweeps"


def test_ray_tune_is_not_handed_the_environments_credentials():
    from ray.tune.execution import class_cache

    from sweep.driver.session import is_secret_name, withhold_secrets_from_ray

    withhold_secrets_from_ray()
    assert not {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID"} & set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert "RAY_CHDIR_TO_TRIAL_DIR" in class_cache.ENV_VARS_TO_PROPAGATE  # the rest still propagates
    assert all(is_secret_name(n) for n in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"))
    assert not is_secret_name("KERAS_BACKEND")


def test_grid_size_of_a_huge_range_is_counted_without_listing_it():
    from sweep.search import space
    from sweep.spec.config import SearchConfig

    search = SearchConfig(sampler="grid", trials=2, space={"units": {"type": "int", "low": 1, "high": 10**12}})
    assert space.grid_size(search) == 10**12
    with pytest.raises(Exception, match="expected a grid of at most 100000 configurations"):
        space.grid_configs(search)


def test_credentials_in_a_tracking_uri_become_mlflows_variables_and_leave_the_uri(auth_server, monkeypatch):
    """MLflow prints its tracking URI ("View run ... at: URI") and the sweep's state pickles hold
    it: the password is sent as basic auth from MLflow's own variables, never kept in the URI."""
    from sweep.tracking.client import resolve_uri

    address, seen = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "before")  # restored (or removed) after the test
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "before")
    uri = resolve_uri(f"http://alice:S3cret@{address}")
    assert uri == f"http://{address}" and "S3cret" not in uri
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "S3cret"
    check_reachable(uri)
    assert seen[-1] == "Basic " + base64.b64encode(b"alice:S3cret").decode(), "still sent, as basic auth"


# URIs a user may type with a credential in them: a password with characters a URI cannot hold as
# is, an invalid port, credentials as query parameters (MLflow tokens, database passwords, S3 keys)
SECRET_URIS = [
    "http://alice:S3cret/x@127.0.0.1:9",
    "http://alice:p@ss#S3cret@127.0.0.1:9",
    "http://alice:S3cret@127.0.0.1:notaport",
    "https://alice:S3cret@host:5000/path?a=1",
    "http://127.0.0.1:9/?token=S3cret",
    "postgresql://alice@127.0.0.1:9/db?password=S3cret",
    "s3://bucket/p?access_key=AKIAX&secret_key=S3cret&scheme=http",
    "https://acct.blob.core.windows.net/c?sv=2022&sig=S3cret",
]


@pytest.mark.parametrize("uri", SECRET_URIS)
def test_redact_masks_every_kind_of_credential_and_never_raises(uri):
    from sweep.tracking.client import redact_text

    shown = redact(uri)
    assert "S3cret" not in shown and "***" in shown
    assert "S3cret" not in redact_text(f"Traceback ...\nValueError: cannot open '{uri}' (twice: {uri})")


def test_redact_leaves_uris_without_credentials_alone():
    for uri in ("http://127.0.0.1:5000", "sqlite:////tmp/a:b@c/mlflow.db", "s3://bucket/p?region=eu-west-1", "databricks"):
        assert redact(uri) == uri


def test_a_password_no_uri_parser_reads_as_meant_is_refused_without_echoing_it(monkeypatch):
    from sweep.tracking.client import resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(SweepConfigError) as info:
        resolve_uri("http://alice:S3cret/x@127.0.0.1:9")
    assert "S3cret" not in str(info.value) and "percent-encode" in str(info.value)
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # nothing half-moved


def test_a_percent_encoded_password_is_sent_decoded(monkeypatch):
    from sweep.tracking.client import resolve_uri

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "before")
    assert resolve_uri("http://alice:p%40ss%2FS3cret@127.0.0.1:9") == "http://127.0.0.1:9"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss/S3cret"


def test_storage_credentials_in_the_query_are_refused_without_echoing_them():
    from sweep.driver.runner import storage_folder

    with pytest.raises(SweepConfigError) as info:
        storage_folder("s3://bucket/p?access_key=AKIAX&secret_key=S3cret&endpoint_override=127.0.0.1:9", "demo")
    assert "S3cret" not in str(info.value) and "AKIAX" not in str(info.value)
    assert "access_key, secret_key" in str(info.value) and "AWS_SECRET_ACCESS_KEY" in str(info.value)
    assert storage_folder("s3://bucket/p?region=eu-west-1", "demo") == "s3://bucket/p/demo?region=eu-west-1"  # the sweep's folder goes in the path


@pytest.mark.parametrize("uri, said", [
    ("http://alice:S3cret@127.0.0.1:notaport", "expected a port number"),
    ("http://alice:S3cret/x@127.0.0.1:9", "percent-encode"),
    ("postgresql://alice@127.0.0.1:9/db?password=S3cret", "needs the Python package"),
])
def test_read_commands_say_what_is_wrong_with_a_tracking_uri_in_one_line_without_its_secret(uri, said, tmp_path):
    import glob
    import subprocess
    import sys

    before = set(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "sweep-error-*.txt")))
    done = subprocess.run([sys.executable, "-m", "sweep.cli", "status", "demo", "--tracking-uri", uri], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "SWEEP_SESSION": "0"})
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "S3cret" not in done.stdout + done.stderr
    assert set(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "sweep-error-*.txt"))) == before  # no traceback file


def test_a_web_server_without_mlflow_at_the_uris_path_is_one_line(tmp_path):
    """A tracking URI with a wrong path prefix: /health answered 404 (taken as "reachable"), and
    `sweep list` then failed "unexpectedly" with an HTML page as its reason."""
    import functools
    import http.server

    (tmp_path / "index.html").write_text("<!doctype html><p>not mlflow</p>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConnectionError) as info:
            check_reachable(f"http://127.0.0.1:{server.server_address[1]}/prefix", timeout=5)
        assert "no MLflow tracking server is at that path" in str(info.value)
    finally:
        server.shutdown()
