"""One live driver per sweep: the same sweep file started twice (a second terminal, a CI retry)
ran every trial into one storage folder and gave MLflow each trial twice, with exit 0 both times."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from sweep.driver import recovery, runner
from sweep.errors import SweepConfigError


@pytest.fixture()
def live_process():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def _hold(folder, pid: int) -> None:
    recovery.lock_path(str(folder)).parent.mkdir(parents=True, exist_ok=True)
    recovery.lock_path(str(folder)).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_a_lock_a_live_driver_holds_is_not_taken(tmp_path, live_process):
    _hold(tmp_path / "demo", live_process)
    with pytest.raises(recovery.SweepRunning) as info:
        recovery.take_lock(str(tmp_path / "demo"))
    assert info.value.holder["pid"] == live_process
    assert json.loads(recovery.lock_path(str(tmp_path / "demo")).read_text())["pid"] == live_process, "left as it was"


def test_a_dead_drivers_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _hold(tmp_path / "demo", dead.pid)
    recovery.take_lock(str(tmp_path / "demo"))
    assert recovery.live_driver(str(tmp_path / "demo")) is None  # it is this process's own now
    recovery.take_lock(str(tmp_path / "demo"))  # and taken again by its holder (a second sweep in this process)


def test_running_a_sweep_another_driver_runs_is_refused_before_anything_starts(tmp_path, live_process):
    _hold(tmp_path / "runs" / "twice", live_process)
    sweep_file = {"name": "twice", "data": {"source": "synthetic", "samples": 40, "features": 4},
                  "search": {"trials": 1, "space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}},
                  "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    with pytest.raises(SweepConfigError) as info:
        runner.run(sweep_file, storage=str(tmp_path / "runs"), quiet=True)
    assert info.value.key == "name" and f"'twice' is running now (pid {live_process} on " in info.value.expected
    assert not (tmp_path / "mlflow.db").exists(), "nothing recorded"


def test_status_tells_a_running_sweep_from_one_whose_driver_is_gone(tmp_path, live_process):
    """After kill -9 of its driver, `sweep status` said "running; 1 running" until someone resumed."""
    from sweep import cli

    folder = tmp_path / "runs" / "demo"
    running = {"sweep_status": "RUNNING", "storage": str(folder)}
    assert cli._driver_alive(running) is False  # no lock: killed before it could close the records
    _hold(folder, live_process)
    assert cli._driver_alive(running) is True
    assert cli._driver_alive({**running, "storage": "s3://bucket/runs/demo"}) is None  # cannot be told from here
    assert cli._driver_alive({**running, "sweep_status": "FINISHED"}) is None


def test_a_changed_sweep_file_is_refused_naming_what_changed(tmp_path):
    """The refusal said only "(it changed)": which of the file's keys was left to guess."""
    from sweep.spec import config as config_module
    from sweep.tracking.client import client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = {"name": "changed", "data": {"source": "synthetic", "samples": 40, "features": 4}, "fit": {"epochs": 200},
           "search": {"trials": 2, "space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}}}
    before = config_module.load(raw)
    mlflow = client(uri)
    parent = mlflow.create_run(mlflow.create_experiment("changed"))
    mlflow.log_text(parent.info.run_id, before.model_dump_json(), "sweep/config.json")
    now = config_module.load({**raw, "fit": {"epochs": 12}, "search": {**raw["search"], "trials": 9}})
    recorded = mlflow.get_run(parent.info.run_id)
    assert runner._changed_keys(uri, recorded, now) == ["fit.epochs 200 -> 12"], "the budget may change"


def test_a_changed_bound_in_the_search_space_is_named_by_its_leaf_key(tmp_path):
    """A changed bound was shown as the whole space cut short (`search.space {batch_size: ... ->
    {batch_size: ...`), with a `when:` the user never wrote, and the refusal blamed the key `name`."""
    from sweep.spec import config as config_module
    from sweep.tracking.client import client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = {"batch_size": {"type": "categorical", "choices": [32, 64]},
             "learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}
    raw = {"name": "bound", "data": {"source": "synthetic", "samples": 40, "features": 4}, "search": {"trials": 2, "space": space}}
    mlflow = client(uri)
    parent = mlflow.create_run(mlflow.create_experiment("bound"))
    mlflow.log_text(parent.info.run_id, config_module.load(raw).model_dump_json(), "sweep/config.json")
    recorded = mlflow.get_run(parent.info.run_id)
    narrower = {**space, "learning_rate": {**space["learning_rate"], "high": 0.05}}
    now = config_module.load({**raw, "search": {"trials": 2, "space": narrower}})
    assert runner._changed_keys(uri, recorded, now) == ["search.space.learning_rate.high 0.1 -> 0.05"]
    from sweep.tracking.tags import CONFIG_HASH_TAG, NAME_TAG, ROLE_TAG

    mlflow.set_tag(parent.info.run_id, ROLE_TAG, "parent")
    mlflow.set_tag(parent.info.run_id, NAME_TAG, "bound")
    mlflow.set_tag(parent.info.run_id, CONFIG_HASH_TAG, runner.config_hash(config_module.load(raw)))
    with pytest.raises(SweepConfigError) as info:
        runner._decide_resume(config_module.load({**raw, "search": {"trials": 2, "space": narrower}, "tracking": {"uri": uri}}),
                              "sweep.yaml", str(tmp_path / "runs" / "bound"), fresh=False)
    assert info.value.key == "search.space.learning_rate.high", "the refusal blamed `name`"
    more = {**narrower, "batch_size": {"type": "categorical", "choices": [32, 128]}}
    now = config_module.load({**raw, "fit": {"epochs": 3}, "search": {"trials": 2, "space": more}})
    assert runner._changed_keys(uri, recorded, now, shown=2) == [
        "fit.epochs 10 -> 3", "search.space.batch_size.choices [32, 64] -> [32, 128]", "and 1 more"]


def test_resume_says_when_the_sweep_file_now_differs_from_the_recorded_sweep(tmp_path):
    """`sweep resume NAME` runs the recorded sweep: an edit of the file since was ignored without a word."""
    import io

    import yaml

    from sweep.spec import config as config_module
    from sweep.tracking.client import client
    from sweep.tracking.tags import CONFIG_HASH_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = {"name": "edited", "data": {"source": "synthetic", "samples": 40, "features": 4}, "fit": {"epochs": 20},
           "search": {"trials": 2, "space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    before = config_module.load(path, {"tracking.uri": uri})
    mlflow = client(uri)
    parent = mlflow.create_run(mlflow.create_experiment("edited"), tags={CONFIG_HASH_TAG: runner.config_hash(before)})
    mlflow.log_text(parent.info.run_id, before.model_dump_json(), "sweep/config.json")
    parent = mlflow.get_run(parent.info.run_id)

    def said() -> str:
        out = io.StringIO()
        runner._say_if_the_file_differs(uri, parent, str(path), out)
        return out.getvalue()

    path.write_text(yaml.safe_dump({**raw, "search": {**raw["search"], "trials": 5}}))
    assert said() == "", "the budget may change on resume"
    path.write_text(yaml.safe_dump({**raw, "fit": {"epochs": 9}}))
    assert said() == (f"note: {path} differs from the sweep as it was recorded (fit.epochs 20 -> 9): sweep resume continues "
                      f"the recorded sweep; to run the file as it is now: sweep run {path} --fresh\n")
    path.write_text("name: [edited\n")
    assert said().startswith(f"note: {path} no longer loads (") and "continues the sweep as it was recorded" in said()
    path.unlink()
    assert said() == ""


def test_the_same_sweep_with_another_storage_is_refused_while_its_driver_runs(tmp_path, live_process):
    """`sweep run FILE --storage stB` while the same sweep ran with `--storage stA`: the second
    driver took its RUNNING parent for an unfinished sweep, joined it, and ran trials twice."""
    from sweep.spec import config as config_module
    from sweep.tracking.client import client
    from sweep.tracking.tags import NAME_TAG, ROLE_TAG, STORAGE_ROOT_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = config_module.load({"name": "joined", "data": {"source": "synthetic", "samples": 40, "features": 4},
                                 "search": {"trials": 2, "space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}},
                                 "tracking": {"uri": uri}})
    mlflow = client(uri)
    mlflow.create_run(mlflow.create_experiment("joined"), tags={ROLE_TAG: "parent", NAME_TAG: "joined", STORAGE_ROOT_TAG: str(tmp_path / "stA")})
    _hold(tmp_path / "stA" / "joined", live_process)
    with pytest.raises(SweepConfigError) as info:
        runner._decide_resume(config, "sweep.yaml", str(tmp_path / "stB" / "joined"), fresh=False)
    assert info.value.key == "name" and f"'joined' is running now (pid {live_process} on " in info.value.expected


def test_a_moved_sweep_folder_is_resumed_from_its_new_place(tmp_path):
    """`mv st/demo st2/demo`, then `sweep resume demo --storage st2`: the checkpoints were looked
    for at the recorded old paths, and a healthy interrupted trial failed as "its checkpoint is gone"."""
    from sweep.driver.recovery import PriorTrial, ResumeState

    moved = tmp_path / "st2" / "demo" / "0000_ab" / "checkpoint_000002"
    moved.mkdir(parents=True)
    fields = {"params": {}, "status": "interrupted", "value": 0.2, "last_value": 0.2, "epochs": 2, "best_epoch": 2, "reason": None, "last_step": 2}
    there = PriorTrial(trial_id="a", run_id="ra", number=0, checkpoint=str(tmp_path / "st" / "demo" / "0000_ab" / "checkpoint_000002"), **fields)
    elsewhere = PriorTrial(trial_id="b", run_id="rb", number=1, checkpoint="/somewhere/else/checkpoint_000001", **fields)
    state = ResumeState(parent_run_id="p", interrupted=[there, elsewhere])
    runner._rebase_checkpoints(state, str(tmp_path / "st" / "demo"), str(tmp_path / "st2" / "demo"))
    assert there.checkpoint == str(moved) and elsewhere.checkpoint == "/somewhere/else/checkpoint_000001"


def test_a_lock_whose_pid_now_names_another_process_is_a_dead_drivers(tmp_path, live_process):
    """After kill -9 and a reboot (or pid wrap-around) the lock's pid named another process:
    `sweep status` said running, and `sweep resume` was refused for ever. The lock records when
    its process started, too."""
    folder = tmp_path / "demo"
    recovery.take_lock(str(folder))
    assert json.loads(recovery.lock_path(str(folder)).read_text())["started"] == recovery.process_start(os.getpid())
    recovery.lock_path(str(folder)).write_text(json.dumps({"pid": live_process, "host": socket.gethostname(), "started": 1}))
    assert recovery.live_driver(str(folder)) is None, "the pid lives, but it is another process"
    _hold(folder, live_process)  # an older lock without its start time: the pid alone decides, as before
    assert recovery.live_driver(str(folder))["pid"] == live_process


def test_resume_of_a_sweep_that_ran_to_its_end_says_so(tmp_path):
    """`sweep resume demo` after demo finished said "found none to resume", as if the name were wrong."""
    from sweep.tracking.client import client
    from sweep.tracking.tags import FILE_TAG, NAME_TAG, ROLE_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = client(uri)
    run = mlflow.create_run(mlflow.create_experiment("ended"), tags={ROLE_TAG: "parent", NAME_TAG: "ended", FILE_TAG: "/home/u/ended.yaml"})
    mlflow.set_terminated(run.info.run_id, "FINISHED")
    with pytest.raises(SweepConfigError) as info:
        runner.resume("ended", tracking_uri=uri, quiet=True)
    said = str(info.value)
    assert "sweep 'ended' ran to its end (finished at " in said, said
    assert "`sweep best ended` shows its best trial; `sweep run /home/u/ended.yaml` starts a new sweep" in said, said
    with pytest.raises(SweepConfigError) as info:
        runner.resume("other", tracking_uri=uri, quiet=True)
    assert "found none to resume" in str(info.value)
