"""Bad command-line input and addresses a new user tried: one line naming the option, at once,
before any run is created (each was a traceback, a crash line, or a minutes-long wait)."""

from __future__ import annotations

import argparse
import sys
import textwrap

import pytest

from sweep import cli
from sweep.driver import cluster, runner
from sweep.errors import InputError, SweepConfigError
from sweep.tracking.client import check_reachable


def _args(*sets: str, name: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(set=list(sets), epochs=None, name=name)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("fit.epochs=[3", "--set: fit.epochs=[3: expected a YAML value after '=', got one YAML cannot read (expected ',' or ']', but got '<stream end>' at column 3): check its brackets and quotes"),
        ("storage=/tmp/x", "--set: storage=/tmp/x: expected a key of the sweep file, got 'storage', which is the option --storage"),
    ],
    ids=["unreadable-yaml", "an-option-not-a-key"],
)
def test_set_values_the_sweep_cannot_use_are_one_line(item, expected):
    with pytest.raises(SweepConfigError) as info:
        cli._set_overrides(_args(item))
    assert str(info.value) == expected


def test_set_name_is_the_files_name_key_as_name_gives_it():
    """--set name=other crashed: sweep.run() got multiple values for keyword argument 'name'."""
    args = _args("name=other", "fit.epochs=2")
    assert cli._set_overrides(args) == {"fit.epochs": 2} and args.name == "other"
    args = _args("name=other", name="given")
    cli._set_overrides(args)
    assert args.name == "given"


def test_set_null_gives_the_key_its_default_as_if_the_file_lacked_it(tmp_path):
    """--set model.loss=null was dropped: the file's per-output loss still applied."""
    from sweep.spec import config as config_module

    path = tmp_path / "s.yaml"
    path.write_text("name: n\ndata: {source: digits}\nmodel: {builder: mlp, loss: mse}\nfit: {epochs: 3}\n"
                    "search: {space: {units: {type: int, low: 4, high: 8}}}\n")
    overrides = cli._set_overrides(_args("model.loss=null", "fit.epochs="))
    loaded = config_module.load(path, overrides)
    assert loaded.model.loss is None and loaded.fit.epochs == config_module.FitConfig().epochs
    with pytest.raises(SweepConfigError) as info:
        config_module.load(path, cli._set_overrides(_args("data.source=null")))
    assert info.value.key == "data.source" and "required key is missing" in info.value.expected


def test_tracking_stores_mlflow_cannot_open_fail_at_once(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConnectionError, match="adir is a folder, not a sqlite database file"):
        check_reachable(f"sqlite:///{tmp_path / 'adir'}")
    for uri in ("./mlruns", "file:///tmp/mlruns"):
        with pytest.raises(ConnectionError, match="MLflow's file store .* is not supported: use sqlite:///FILE"):
            check_reachable(uri)
    with pytest.raises(ConnectionError, match="the folder .*no-such-folder does not exist"):
        check_reachable(f"sqlite:///{tmp_path / 'no-such-folder' / 'mlflow.db'}")  # MLflow made every missing folder of a typo
    check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")  # a file (to be created) is fine


def test_a_databricks_store_without_a_workspace_is_one_line_before_mlflow_tries(tmp_path, monkeypatch, capsys):
    """MLflow printed two warnings, then `sweep list` failed "unexpectedly" with a line cut short."""
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "databrickscfg"))
    with pytest.raises(ConnectionError, match=r"Databricks is not configured for 'databricks://work': .*add the profile \[work\]"):
        check_reachable("databricks://work")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set DATABRICKS_HOST and DATABRICKS_TOKEN" in err, err
    (tmp_path / "databrickscfg").write_text("[work]\nhost = https://example.cloud.databricks.com\ntoken = x\n")
    check_reachable("databricks://work")  # configured: MLflow takes it from here
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    check_reachable("databricks")


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("ftp://host/x", "expected a local folder or a URI Ray can store checkpoints at"),
        ("s3://AKIAX:PwZZ3@bucket/x", "expected a storage URI without credentials, got s3://***@bucket...: give them in the environment"),
    ],
    ids=["unknown-scheme", "credentials-in-the-uri"],
)
def test_storage_uris_ray_cannot_use_or_that_hold_secrets_are_refused(storage, expected):
    """An s3 URI with a key in it was stored unmasked in the parent run's sweep.storage_root tag."""
    with pytest.raises(SweepConfigError) as info:
        runner.storage_folder(storage, "x")
    assert info.value.file == "--storage" and expected in info.value.expected and "PwZZ3" not in str(info.value)
    assert runner.storage_folder("s3://bucket/x", "s1") == "s3://bucket/x/s1"


def test_a_dashboard_address_is_not_a_cluster_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SweepConfigError) as info:
        cluster.resolve_address("http://127.0.0.1:8265")
    assert str(info.value).startswith("--address: expected auto, HOST:PORT") and "dashboard" in str(info.value)
    monkeypatch.setenv("RAY_ADDRESS", "https://head:8265")
    with pytest.raises(SweepConfigError, match="^RAY_ADDRESS: "):
        cluster.resolve_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert cluster.resolve_address(None) == "ray://head:10001"


def test_a_module_raising_its_own_base_exception_at_import_is_one_line(tmp_path, monkeypatch):
    """A BaseException that is not an Exception escaped as a full Python traceback."""
    from sweep.inputs.imports import resolve

    (tmp_path / "boom_mod.py").write_text(textwrap.dedent("""
        class Boom(BaseException):
            pass

        raise Boom("bad import")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("boom_mod", None)
    with pytest.raises(InputError) as info:
        resolve("boom_mod:build", "model.builder", (tmp_path,))
    assert info.value.expected == "expected an importable module 'boom_mod', but import raised Boom: bad import"


def test_a_module_calling_os_exit_at_import_is_one_line_not_a_silent_exit(tmp_path, monkeypatch):
    """os._exit(0) at import ended `sweep run` at once: no line, exit 0."""
    import os

    from sweep.inputs.imports import resolve

    (tmp_path / "ends_itself.py").write_text("import os\nos._exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ends_itself", None)
    real = os._exit
    with pytest.raises(InputError) as info:
        resolve("ends_itself:build", "model.builder", (tmp_path,))
    assert info.value.expected == "expected an importable module 'ends_itself', but import called os._exit(0)"
    assert os._exit is real, "restored for everyone else"


def test_a_module_raising_keyboardinterrupt_itself_in_the_preflights_thread_is_its_failure(tmp_path, monkeypatch):
    """It read as a Ctrl-C: "interrupted before any trial started ... run the same command again",
    which failed the same way. The preflight imports in a thread of its own, where Python never
    raises a real Ctrl-C; in the main thread a KeyboardInterrupt still stops the command."""
    import threading

    from sweep.inputs.imports import resolve

    (tmp_path / "stops_itself.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    outcome: list[BaseException] = []

    def preflight() -> None:
        try:
            resolve("stops_itself:build", "model.builder", (tmp_path,))
        except BaseException as exc:  # noqa: BLE001 - what the thread saw
            outcome.append(exc)

    sys.modules.pop("stops_itself", None)
    thread = threading.Thread(target=preflight)
    thread.start()
    thread.join(60)
    assert isinstance(outcome[0], InputError)
    assert outcome[0].expected == "expected an importable module 'stops_itself', but import raised KeyboardInterrupt itself"
    sys.modules.pop("stops_itself", None)
    with pytest.raises(KeyboardInterrupt):
        resolve("stops_itself:build", "model.builder", (tmp_path,))


@pytest.mark.parametrize("command", [["status", "x"], ["best", "x"], ["trials", "x"], ["list"], ["ui"], ["ui", "x"], ["resume", "x"]])
def test_every_command_reads_a_bare_store_path_as_the_sqlite_file_it_likely_meant(command, tmp_path, monkeypatch, capsys):
    """Only `sweep run` said "did you mean 'sqlite:///mlflow.db'"; the read commands said the file
    store was unsupported, and `sweep ui` failed "unexpectedly" or printed MLflow's 25-line traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEP_SESSION", "0")
    assert cli.main([*command, "--tracking-uri", "mlflow.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'sqlite:///mlflow.db'?" in err, err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_a_file_uri_storage_is_the_folder_it_names_and_checked_as_one(tmp_path):
    """--storage file:///path/to/a-file failed "unexpectedly" after Ray's start and left a FAILED run."""
    (tmp_path / "a-file").write_text("x")
    assert runner.storage_folder(f"file://{tmp_path}/runs", "demo") == str(tmp_path / "runs" / "demo")
    with pytest.raises(SweepConfigError) as info:
        runner._check_storage(runner.storage_folder(f"file://{tmp_path}/a-file", "demo"))
    assert info.value.file == "--storage" and "not a folder" in info.value.expected
    with pytest.raises(SweepConfigError) as info:
        runner.storage_folder("file://relative/dir", "demo")
    assert "three slashes" in info.value.expected


@pytest.mark.parametrize("option", [["--num-cpus", "-2"], ["--num-cpus", "0"], ["--idle-timeout", "-1"], ["--idle-timeout", "soon"]])
def test_sweep_up_refuses_sizes_and_timeouts_below_one_at_once(option, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["up", *option])
    assert info.value.code == 2 and f"argument {option[0]}: expected" in capsys.readouterr().err


def test_a_huge_grid_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """A grid of 10**18 was refused only once Ray and TensorFlow were up (12 s in)."""
    import ray

    monkeypatch.setenv("SWEEP_SESSION", "0")
    sweep_file = {"name": "g", "data": {"source": "synthetic", "samples": 100, "features": 4},
                  "search": {"sampler": "grid", "space": {"a": {"type": "int", "low": 1, "high": 10**9}, "b": {"type": "int", "low": 1, "high": 10**9}}},
                  "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    started = ray.is_initialized()
    with pytest.raises(SweepConfigError) as info:
        runner.run(sweep_file, storage=str(tmp_path / "runs"), quiet=True)
    assert info.value.key == "search.space" and "expected a grid of at most" in info.value.expected
    assert ray.is_initialized() == started and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("htp://127.0.0.1:5000", "the scheme 'htp' is not a tracking store MLflow opens (expected sqlite, http, https, databricks, uc, postgresql, mysql, mssql); did you mean 'http'?"),
        ("sqlite://", "an in-memory sqlite database is not shared by the sweep's processes (driver, writer): give a file, sqlite:///PATH (e.g. sqlite:///mlflow.db)"),
        ("sqlite:///:memory:", "an in-memory sqlite database is not shared"),
        ("http://[::1", "expected a URL with a host, but it cannot be read: Invalid IPv6 URL"),
    ],
    ids=["scheme-typo", "sqlite-in-memory", "sqlite-memory-path", "unclosed-ipv6"],
)
def test_tracking_uris_mlflow_cannot_use_are_one_line_before_anything_starts(uri, said, capsys):
    """htp:// was found after the 27 s preflight in MLflow's words, cut mid-word; sqlite:// hung the
    sweep at its end (each process its own empty database) and left its writer behind."""
    with pytest.raises(ConnectionError) as err:
        check_reachable(uri)
    assert str(err.value).startswith(said)
    assert cli.main(["list", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.count("\n") == 1



def test_an_upper_case_sqlite_scheme_or_a_query_is_still_the_file(tmp_path):
    """SQLITE:////path was refused as in memory; sqlite:////path?mode=ro said the store did not exist."""
    from sweep.tracking.client import resolve_uri, store_exists

    db = tmp_path / "mlflow.db"
    check_reachable(f"SQLITE:///{db}")
    assert resolve_uri(f"SQLITE:///{db}") == f"sqlite:///{db}"
    db.write_bytes(b"")
    assert store_exists(f"sqlite:///{db}?mode=ro")


@pytest.mark.parametrize("command", [["list"], ["status", "x"], ["best", "x"], ["run", "SWEEP_FILE"]])
def test_a_sqlite_file_that_is_not_an_mlflow_store_is_one_line_and_left_untouched(tmp_path, command, capsys):
    """`sweep list` created MLflow's tables in another application's database; a file that is no
    database made every command fail "unexpectedly" (`sweep ui`: 68 lines of traceback)."""
    import sqlite3

    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER)")
    garbage = tmp_path / "notes.db"
    garbage.write_text("these are my notes\n")
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("name: s\ndata: {source: digits}\nsearch: {space: {learning_rate: {type: float, low: 0.001, high: 0.1}}}\n")
    command = [str(sweep_file) if part == "SWEEP_FILE" else part for part in command]
    for store, said in ((foreign, "is another application's sqlite database (tables orders), not an MLflow store"),
                        (garbage, "is not a sqlite database (file is not a database)")):
        before = store.read_bytes()
        assert cli.main([*command, "--tracking-uri", f"sqlite:///{store}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err
        assert store.read_bytes() == before, "left as it was"
