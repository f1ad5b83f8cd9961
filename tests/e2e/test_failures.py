"""Faults inside trials: NaN loss, an infeasible batch size, a factory that raises, a worker
process SIGKILLed mid-epoch, and a sweep whose every trial fails the same way. Each test states
the fault and asserts what survived."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.errors import SweepConfigError

pytestmark = pytest.mark.slow

USER_CODE = Path(__file__).parent / "user_code"


def _sweep(folder: Path, name: str, space: dict, **extra) -> dict:
    for module in ("faulty_models.py", "my_data.py"):
        shutil.copy(USER_CODE / module, folder / module)
    sweep = {
        "name": name,
        "data": {"source": "my_data:make", "args": {"rows": 400}, "validation_split": 0.25},
        "model": {"builder": "faulty_models:build", "loss": "mse", "metrics": ["mae"]},
        "fit": {"epochs": 3, "batch_size": 16},
        "objective": {"metric": "val_loss", "mode": "min"},
        "search": {"sampler": "grid", "seed": 0, "trials": 20, "space": space},
        "scheduler": {"type": "fifo"},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
    }
    for key, value in extra.items():
        sweep[key] = {**sweep.get(key, {}), **value}
    return sweep


def _children(uri: str, name: str) -> dict[str, object]:
    from sweep.tracking import store

    parent = store.find_parent_run(uri, name)
    return {c.data.params.get("fault", "") + "/" + c.data.params.get("batch_size", ""): c for c in store.child_runs(uri, parent)}


def test_failing_trials_fail_alone_with_their_reason(ray_session, tmp_path, monkeypatch):
    import sweep

    monkeypatch.chdir(tmp_path)
    space = {"fault": {"type": "categorical", "choices": ["none", "nan", "raise", "exit", "interrupt"]},
             "batch_size": {"type": "categorical", "choices": [16, 32]}}
    config = _sweep(tmp_path, "e2e-faults", space)
    too_big = _sweep(tmp_path, "e2e-faults", {**space, "batch_size": {"type": "categorical", "choices": [16, 100000]}})
    with pytest.raises(SweepConfigError, match="search.space.batch_size.choices.1: expected at most 300"):
        sweep.run(too_big, storage=str(tmp_path / "runs"), quiet=True)  # refused before any trial (issue 18 §7)
    result = sweep.run(config, storage=str(tmp_path / "runs"), quiet=True)

    assert result.stopped_because is None, "infeasible and differing failures do not stop the sweep"
    rows = {(r["param.fault"], int(r["param.batch_size"])): r for r in result.trials.to_dict("records")}
    assert len(rows) == 10, "every grid point ran once"
    assert rows[("none", 16)]["status"] == "completed" and rows[("none", 16)]["epochs"] == 3
    nan = rows[("nan", 16)]
    assert (nan["status"], nan["reason"], nan["epochs"]) == ("failed", "nan_loss", 1), "NaN stops the trial in its first epoch"
    assert rows[("raise", 16)]["status"] == "failed"
    assert re.search(r"it raised RuntimeError: faulty factory refused to build \(\w+\.py:\d+\)$", rows[("raise", 16)]["reason"]), rows[("raise", 16)]["reason"]  # and where
    assert rows[("none", 32)]["status"] == "completed"
    exited = rows[("exit", 16)]  # was a worker death: retried twice, with Ray's "worker died" lines
    assert exited["status"] == "failed" and "the trial's own code called sys.exit(3) during fit()" in exited["reason"], exited["reason"]
    interrupted = rows[("interrupt", 16)]  # was Ray's "TaskCancelledError: Task ... was cancelled"
    assert interrupted["status"] == "failed", interrupted
    assert re.search(r"the trial's own code raised KeyboardInterrupt: stop now \(faulty_models\.py:\d+\)", interrupted["reason"]), interrupted["reason"]

    children = _children(result.tracking_uri, "e2e-faults")
    assert len(children) == 10
    assert children["exit/16"].data.tags.get("sweep.retries", "0") == "0", "the trial's own error: not retried"
    assert children["interrupt/32"].data.tags.get("sweep.retries", "0") == "0"
    assert children["nan/16"].data.tags["sweep.status"] == "failed"
    assert children["nan/16"].data.tags["sweep.reason"] == "nan_loss"
    assert children["raise/16"].info.status == "FAILED"
    assert children["none/16"].info.status == "FINISHED"
    from sweep.tracking import store

    assert store.status_summary(result.tracking_uri, "e2e-faults")["trials_requested"] == 10, "the grid's 10 points, not search.trials: 20"


def test_a_sweep_whose_every_trial_fails_the_same_way_stops_early_and_says_it_once(ray_session, tmp_path):
    import yaml

    space = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    config = _sweep(tmp_path, "e2e-broken", space, model={"builder": "faulty_models:build_always_broken"},
                    search={"sampler": "random", "trials": 12})
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path), "--storage", str(tmp_path / "runs"),
                          "--address", ray_session], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert "sweep stopped: the first" in run.stderr
    assert re.search(r"sweep e2e-broken stopped after \d+:\d\d: ", run.stdout), "not 'finished in' (a helper saw it after a storage fault)"
    assert output.count("in build_always_broken") == 1, "the trial's own traceback, once: " + output[-4000:]
    assert "ValueError: cannot build a model for input shape (6,): broken on purpose" in run.stderr
    first = re.search(r"trial +(\d+) failed \(model\.builder: expected", run.stdout)  # the key, not this package's error class
    assert first, run.stdout[-3000:]
    # two trials run at once, so trial 1 may fail before trial 0; later ones point back to whichever was first
    assert f"same error as trial {first.group(1)}" in run.stdout, "later identical failures point back instead of repeating"
    assert "Unhandled error" not in output and "Trial task failed" not in output

    from sweep.tracking import store

    summary = store.status_summary(config["tracking"]["uri"], "e2e-broken")
    failed = summary["trials"].get("failed", 0)
    assert 3 <= failed < 12, summary
    assert summary["sweep_status"] == "FAILED"


def test_a_sweep_whose_every_trial_fails_after_an_epoch_is_failed_not_finished(ray_session, tmp_path, capsys):
    """Every trial failed at its second epoch: the sweep ended FINISHED, exit 0, with a model
    registered, as if it had worked. It is FAILED now (exit 1), saying why once; the records,
    the best epoch's checkpoint included, stay."""
    import sweep
    from sweep.tracking import store

    space = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    config = _sweep(tmp_path, "e2e-late-failure", space, fit={"callbacks": ["faulty_models:FailAtSecondEpoch"]},
                    search={"sampler": "random", "trials": 2}, failure={"max_retries": 0})
    result = sweep.run(_write(tmp_path, config), storage=str(tmp_path / "runs"), quiet=True)
    assert list(result.trials["status"]) == ["failed", "failed"], result.trials
    assert result.stopped_because.startswith("sweep failed: every trial failed (each after at most 1 epoch(s)); trial 0000: "), result.stopped_because
    assert "broken at the second epoch on purpose" in result.stopped_because
    summary = store.status_summary(config["tracking"]["uri"], "e2e-late-failure")
    assert summary["sweep_status"] == "FAILED", summary
    assert result.best is not None and result.best.checkpoint, "the best epoch's checkpoint is kept"
    from sweep import cli

    capsys.readouterr()
    cli._print_result(result)
    said = capsys.readouterr().out
    assert "every trial failed; the best epoch any reached: val_loss = " in said and "\nbest " not in said, said


def _write(folder: Path, config: dict) -> str:
    import yaml

    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_worker_killed_mid_epoch_retries_from_its_checkpoint(ray_session, tmp_path, monkeypatch):
    import sweep
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    space = {"fault": {"type": "categorical", "choices": ["kill_once", "none"]}}
    config = _sweep(tmp_path, "e2e-killed", space, fit={"epochs": 6, "batch_size": 8, "steps_per_execution": 1},
                    data={"args": {"rows": 4000}})
    result = sweep.run(config, storage=str(tmp_path / "runs"), quiet=True)

    assert (tmp_path / "killed.marker").exists(), "the fault was injected"
    assert list(result.trials["status"]) == ["completed", "completed"]
    killed = result.trials.set_index("param.fault").loc["kill_once"]
    assert killed["retries"] == 1 and killed["epochs"] == 6
    child = _children(result.tracking_uri, "e2e-killed")["kill_once/"]
    assert child.data.tags["sweep.retries"] == "1"
    assert int(child.data.tags["sweep.retried_from_epoch"]) >= 1, "restarted from its checkpoint, not from scratch"
    assert child.info.status == "FINISHED"
    client = MlflowClient(result.tracking_uri)
    for metric in ("loss", "val_loss"):
        steps = [m.step for m in client.get_metric_history(child.info.run_id, metric)]
        assert sorted(steps) == list(range(1, 7)), (metric, steps)
