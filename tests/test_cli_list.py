"""The read-only CLI of issue 19 on a real MLflow sqlite store (no Ray): ``sweep list``, ``sweep best``'s
text and JSON, unknown names, never creating a store, ``--version``, ``--set``."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time

import pytest

from sweep import cli
from sweep.tracking import store
from sweep.tracking import tracker
from sweep.tracking.client import client as tracking_client
from fake_sweeps import _fake_parent, _fake_trial  # tests/ is on sys.path (rootdir conftest)


def _finished_sweep(uri: str, name: str, values: list[float], requested: int = 4) -> str:
    client = tracking_client(uri)
    experiment_id = tracker.ensure_experiment(client, uri, name)
    parent = _fake_parent(client, experiment_id, name)
    client.log_param(parent.info.run_id, "config.search.trials", str(requested))
    ids = [
        _fake_trial(client, experiment_id, parent, name, number, "completed", [value - 0.1, value], {"learning_rate": str(0.01 * (number + 1)), "units": "32", "optimizer": "adam"})
        for number, value in enumerate(values)
    ]
    best = max(range(len(values)), key=values.__getitem__)
    for key, value in {"sweep.trials.completed": str(len(values)), "sweep.best_run_id": ids[best], "sweep.best_value": repr(values[best])}.items():
        client.set_tag(parent.info.run_id, key, value)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return ids[best]


def test_list_newest_first_with_counts_best_and_duration(mlflow_uri, capsys):
    _finished_sweep(mlflow_uri, "older", [0.5, 0.7])
    time.sleep(0.01)
    _finished_sweep(mlflow_uri, "newer", [0.8, 0.6, 0.9], requested=3)
    assert cli.main(["list", "--tracking-uri", mlflow_uri, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["newer", "older"]
    assert rows[0]["state"] == "finished" and rows[0]["trials_done"] == 3 and rows[0]["trials_requested"] == 3
    assert rows[0]["best_value"] == pytest.approx(0.9) and rows[0]["metric"] == "val_accuracy"
    assert rows[0]["started"] and rows[0]["duration_s"] >= 0
    assert cli.main(["list", "--tracking-uri", mlflow_uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "TRIALS", "BEST", "STARTED", "DURATION"]
    assert lines[1].startswith("newer ") and "3/3" in lines[1] and "val_accuracy 0.9" in lines[1]
    assert lines[2].startswith("older ") and "2/4" in lines[2]
    assert lines[1].index("finished") == lines[2].index("finished")  # aligned columns


def test_an_interrupted_sweep_shows_its_best_so_far_and_how_to_continue(mlflow_uri, capsys):
    """A KILLED parent (Ctrl-C, SIGTERM) has no final best on it: ``list`` ranks its trials, and
    ``status`` says it can be resumed."""
    client = tracking_client(mlflow_uri)
    experiment_id = tracker.ensure_experiment(client, mlflow_uri, "cut")
    parent = _fake_parent(client, experiment_id, "cut")
    client.log_param(parent.info.run_id, "config.search.trials", "6")
    for number, value in enumerate([0.7, 0.92]):
        _fake_trial(client, experiment_id, parent, "cut", number, "completed", [value - 0.1, value], {"learning_rate": "0.01"})
    for key, value in {"sweep.trials.completed": "2", "sweep.trials.interrupted": "1"}.items():
        client.set_tag(parent.info.run_id, key, value)
    client.set_terminated(parent.info.run_id, "KILLED")
    assert cli.main(["list", "--tracking-uri", mlflow_uri, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["state"] == "killed" and row["best_value"] == pytest.approx(0.92)
    assert row["trials_done"] == 2, "the interrupted trial is not done: sweep resume runs it again"
    assert cli.main(["status", "cut", "--tracking-uri", mlflow_uri]) == 0
    assert capsys.readouterr().out.strip().endswith("interrupted, continue it with `sweep resume cut`")


def test_best_is_aligned_text_and_json_keeps_types(mlflow_uri, capsys):
    best_id = _finished_sweep(mlflow_uri, "typed", [0.5, 0.9])
    assert cli.main(["best", "typed", "--tracking-uri", mlflow_uri, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["params"] == {"learning_rate": 0.02, "units": 32, "optimizer": "adam"}
    assert summary["mlflow_run_id"] == best_id
    assert summary["number"] == 1 and summary["trial"] == "0001" and summary["trial_id"] == "t1"
    assert summary["run_name"] == "typed-0001", "the MLflow run name carries the same number"
    assert cli.main(["best", "typed", "--tracking-uri", mlflow_uri]) == 0
    text = capsys.readouterr().out
    assert "{" not in text and text.splitlines()[0] == "typed: best val_accuracy = 0.9 (max, finished)"
    values = [line for line in text.splitlines()[1:] if line.strip()]
    columns = {line.index(line.split()[-1]) for line in values if len(line.split()) == 2}
    assert len(columns) == 1, text  # every value starts in the same column
    assert any(line.split() == ["trial", "0001", "(ray", "t1)"] for line in values), text
    assert cli.main(["best", "typed", "--tracking-uri", mlflow_uri, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert summary["resumed_as"] is None


def test_best_of_a_resumed_trial_names_the_id_its_checkpoint_folder_carries(mlflow_uri, capsys):
    """Ray gives a resumed trial a new id (its checkpoint folder is ``0001_<new id>``); ``sweep
    best`` keeps the stable ``trial_id`` and shows the new one beside it."""
    best_id = _finished_sweep(mlflow_uri, "again", [0.5, 0.9])
    client = tracking_client(mlflow_uri)
    client.set_tag(best_id, "sweep.resumed_as", "n1")
    client.set_tag(best_id, "sweep.checkpoint", "/runs/again/0001_n1/checkpoint_000002")
    assert cli.main(["best", "again", "--tracking-uri", mlflow_uri, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trial_id"] == "t1" and summary["resumed_as"] == "n1"
    assert cli.main(["best", "again", "--tracking-uri", mlflow_uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["trial", "0001", "(ray", "t1,", "resumed", "as", "n1)"] for line in lines), lines


def test_unknown_name_suggests_and_lists(mlflow_uri, capsys):
    _finished_sweep(mlflow_uri, "digits-mlp", [0.5])
    _finished_sweep(mlflow_uri, "other", [0.5])
    assert cli.main(["best", "digits-mpl", "--tracking-uri", mlflow_uri]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'digits-mlp'?" in err and "sweeps there: other, digits-mlp" in err
    assert cli.main(["status", "zzz", "--tracking-uri", mlflow_uri]) == 2
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status", "x"], ["best", "x"], ["report", "x"], ["export", "x", "out"], ["list"], ["resume", "x"]])
def test_read_only_commands_never_create_a_store(tmp_path, command, capsys):
    db = tmp_path / "none.db"
    code = cli.main([*command, "--tracking-uri", f"sqlite:///{db}"])
    assert not db.exists() and not (tmp_path / "out").exists()
    out = capsys.readouterr()
    if command == ["list"]:
        assert code == 0 and "does not exist" in out.out
    elif command[0] == "resume":  # nothing to resume where there is no store: still none after
        assert code == 2 and "there is no store there" in out.err and out.err.count("\n") == 1, out.err
    else:
        assert code == 2 and "no sweep store at" in out.err


@pytest.mark.parametrize("command", [["status", "x"], ["list"], ["trials", "x"]])
def test_read_only_commands_say_in_seconds_that_a_tracking_server_does_not_answer(command, capsys):
    started = time.monotonic()
    code = cli.main([*command, "--tracking-uri", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: no reachable MLflow tracking store at http://127.0.0.1:9") and err.count("\n") == 1, err
    assert time.monotonic() - started < 15


def test_version_and_set_overrides(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweep.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("sweep ")
    args = cli._parser().parse_args(["run", "f.yaml", "--set", "fit.batch_size=64", "--set", "model.args.units=[8, 16]",
                                     "--set", "search.sampler=random", "--epochs", "3"])
    assert cli._set_overrides(args) == {"fit.batch_size": 64, "model.args.units": [8, 16], "search.sampler": "random", "epochs": 3}
    from sweep.spec.config import load
    from sweep.errors import SweepConfigError

    with pytest.raises(SweepConfigError):
        cli._set_overrides(cli._parser().parse_args(["run", "f.yaml", "--set", "nothing"]))
    for reset in ("name=null", "name="):  # failed "unexpectedly": run() got name twice
        with pytest.raises(SweepConfigError, match="expected a sweep name"):
            cli._set_overrides(cli._parser().parse_args(["run", "f.yaml", "--set", reset]))
    config = load({"name": "s", "data": {"source": "digits"}, "search": {"space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}}},
                  cli._set_overrides(args))
    assert config.fit.batch_size == 64 and config.fit.epochs == 3 and config.model.args["units"] == [8, 16]


def test_typed_param():
    assert [store.typed_param(t) for t in ["1", "0.5", "True", "None", "adam", "1e-3"]] == [1, 0.5, True, None, "adam", 0.001]


def test_non_default_params_keep_essentials_and_differences():
    from sweep.driver.runner import sweep_params
    from sweep.spec.config import load

    config = load({"name": "s", "data": {"source": "digits", "validation_split": 0.3},
                   "search": {"space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}}})
    flat = sweep_params(config)
    kept = tracker.non_default_params(flat)
    assert kept["config.data.validation_split"] == 0.3
    assert {"config.name", "config.search.trials", "config.objective.metric", "config.objective.mode", "config.search.space"} <= set(kept)
    assert "config.data.samples" not in kept and "config.fit.shuffle" not in kept
    assert len(kept) < len(flat) / 2
    assert tracker.non_default_params({"a": 1}) == {"a": 1}


def test_a_conditional_int_parameter_stays_an_int_where_some_trials_lack_it(mlflow_uri):
    client = tracking_client(mlflow_uri)
    experiment_id = tracker.ensure_experiment(client, mlflow_uri, "conditional")
    parent = _fake_parent(client, experiment_id, "conditional")
    for number, params in enumerate([{"optimizer": "sgd", "units": "16"}, {"optimizer": "adam"}, {"optimizer": "sgd", "units": "1"}]):
        _fake_trial(client, experiment_id, parent, "conditional", number, "completed", [0.5, 0.6], params)
    import sweep

    frame = sweep.trials("conditional", tracking_uri=mlflow_uri)
    assert str(frame["params_units"].dtype) == "Int64", frame["params_units"]
    assert frame["params_units"].tolist()[0] == 16 and frame["params_units"].isna().tolist() == [False, True, False]


def test_trials_is_a_typed_dataframe_and_csv(mlflow_uri, capsys):
    import sweep

    _finished_sweep(mlflow_uri, "frame", [0.5, 0.9, 0.7])
    frame = sweep.trials("frame", tracking_uri=mlflow_uri)
    assert list(frame["number"]) == [0, 1, 2] and list(frame["trial_id"]) == ["t0", "t1", "t2"]
    assert str(frame["params_learning_rate"].dtype) == "float64" and str(frame["params_units"].dtype) == "Int64"
    assert frame["params_optimizer"].tolist() == ["adam"] * 3 and frame["value"].dtype == "float64"
    assert frame["value"].tolist() == pytest.approx([0.5, 0.9, 0.7])
    assert str(frame["datetime_start"].dtype).startswith("datetime64") and str(frame["duration"].dtype).startswith("timedelta64")
    with pytest.raises(LookupError):
        sweep.trials("nope", tracking_uri=mlflow_uri)
    assert cli.main(["trials", "frame", "--tracking-uri", mlflow_uri, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("number,trial_id,status,value") and len(lines) == 4
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert lines[0].endswith(",duration_s") and "duration" in rows[0]  # seconds added last; the pandas text stays
    assert [float(row["duration_s"]) for row in rows] == pytest.approx([d.total_seconds() for d in frame["duration"]], abs=1e-3)
    assert cli.main(["trials", "frame", "--tracking-uri", mlflow_uri]) == 0  # for people: 0001, M:SS
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["trial", "trial_id", "status"] and lines[2].split()[0] == "0001"
    assert "days" not in "\n".join(lines) and "mlflow_run_id" not in lines[0]
    assert re.search(r"\s\d+:\d\d\s", lines[1]), lines[1]


def test_json_schema_is_published_and_checks_sweep_files():
    import glob
    from pathlib import Path

    import jsonschema
    import yaml

    from sweep.spec import docs

    repo = Path(__file__).resolve().parents[1]
    committed = (repo / docs.SCHEMA_PATH).read_text(encoding="utf-8")
    assert committed == docs.schema(), "regenerate it: python -m sweep.spec.docs --schema > docs/sweep.schema.json"
    schema = json.loads(committed)
    for path in sorted(glob.glob(str(repo / "search_spaces" / "*.yaml"))):
        jsonschema.validate(yaml.safe_load(Path(path).read_text()), schema)
    minimal = {"name": "x", "data": {"source": "digits"}, "search": {"space": {"lr": {"type": "float", "low": 0.1, "high": 1}}}}
    jsonschema.validate({**minimal, "scheduler": {"grace_period": 2}}, schema)  # no type: ASHA, as the loader reads it
    jsonschema.validate({**minimal, "scheduler": {"type": "fifo"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**minimal, "scheduler": {"type": "fifo", "grace_period": 2}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "data": {"source": "digits"}, "fit": {"epochs": "many"},
                             "search": {"space": {"lr": {"type": "float", "low": 0.1, "high": 1}}}}, schema)


def test_running_a_finished_sweeps_file_says_it_starts_a_new_sweep(mlflow_uri, tmp_path, capsys):
    _finished_sweep(mlflow_uri, "again", [0.5])
    started = store.find_parent_run(mlflow_uri, "again").info.start_time
    tracking_client(mlflow_uri).set_terminated(store.find_parent_run(mlflow_uri, "again").info.run_id, "FINISHED", end_time=started + 90_000)
    path = tmp_path / "again.yaml"
    path.write_text("name: again\ndata: {source: digits}\nsearch: {space: {learning_rate: {type: float, low: 0.001, high: 0.1}}}\n")
    args = cli._parser().parse_args(["run", str(path), "--tracking-uri", mlflow_uri])
    cli._say_if_new_sweep(args, {})
    err = capsys.readouterr().err
    assert "sweep again already finished" in err and "this starts a new sweep" in err
    assert f"already finished ({store.iso_time(started + 90_000)})" in err  # when it finished, not when it started
    args = cli._parser().parse_args(["run", str(path), "--tracking-uri", mlflow_uri, "--name", "fresh-name"])
    cli._say_if_new_sweep(args, {})
    assert capsys.readouterr().err == ""
    args = cli._parser().parse_args(["run", str(path), "--tracking-uri", mlflow_uri, "--trials", "0"])
    cli._say_if_new_sweep(args, {})  # refused by the run in one line: no "starts a new sweep" before it
    assert capsys.readouterr().err == ""


def test_export_and_report_into_a_place_they_cannot_write_say_so_in_one_line(mlflow_uri, tmp_path, capsys):
    """A file where the folder should be was "failed unexpectedly: [Errno 17] File exists" with a traceback file."""
    _finished_sweep(mlflow_uri, "written", [0.5, 0.7])
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("mine\n")
    assert cli.main(["export", "written", str(in_the_way), "--tracking-uri", mlflow_uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"expected a folder to write the model in, got the file {in_the_way}" in err
    assert cli.main(["report", "written", "--out", str(in_the_way / "sub"), "--tracking-uri", mlflow_uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: report: --out: expected a folder the report can be written in"), err
    assert in_the_way.read_text() == "mine\n"


def test_export_of_a_sweep_without_a_best_model_leaves_no_folder(mlflow_uri, tmp_path, capsys):
    _finished_sweep(mlflow_uri, "no-model", [0.5])  # no trial checkpoint: nothing to export
    target = tmp_path / "out" / "best"
    assert cli.main(["export", "no-model", str(target), "--tracking-uri", mlflow_uri]) == 2
    assert "has no best model yet" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a refused export creates nothing"


def test_a_budget_raised_on_resume_is_what_list_and_status_say(mlflow_uri, capsys):
    """`sweep run FILE --trials 6` continuing an interrupted 4-trial sweep ran 6 trials, and `sweep
    list` said 6/4 (a param cannot change; the parent's sweep.trials_requested tag can)."""
    from sweep.tracking.tags import TRIALS_REQUESTED_TAG

    _finished_sweep(mlflow_uri, "raised", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95], requested=4)
    parent = store.find_parent_run(mlflow_uri, "raised")
    tracking_client(mlflow_uri).set_tag(parent.info.run_id, TRIALS_REQUESTED_TAG, "6")
    assert store.status_summary(mlflow_uri, "raised")["trials_requested"] == 6
    assert [row["trials_requested"] for row in store.list_sweeps(mlflow_uri) if row["name"] == "raised"] == [6]


def test_sweep_ui_stopped_by_sigterm_takes_mlflows_server_with_it(mlflow_uri, tmp_path):
    """`timeout 60 sweep ui` (SIGTERM to the command alone) left MLflow's server and its job
    runners serving the port, orphaned; a terminal's Ctrl-C printed ~250 lines of their tracebacks."""
    import signal
    import socket

    import psutil
    from e2e.servers import wait_for_health

    _finished_sweep(mlflow_uri, "ui-stop", [0.5])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "sweep.cli", "ui", "--tracking-uri", mlflow_uri, "--port", str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", ui)
        server = [p for p in psutil.Process(ui.pid).children(recursive=True)]
        ui.send_signal(signal.SIGTERM)
        _, err = ui.communicate(timeout=30)
        assert "MLflow UI stopped" in err and "Traceback" not in err, err[-2000:]
        gone = psutil.wait_procs(server, timeout=15)[1]
        assert not gone, f"left serving: {[p.pid for p in gone]}"
    finally:
        if ui.poll() is None:
            ui.kill()
