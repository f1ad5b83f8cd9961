"""The terminal view, driven like Tune drives it: a real Ledger first, then the LiveView."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

import pytest

from sweep.spec import config as sweep_config
from sweep.spec.config import AshaConfig, FifoConfig, HyperbandConfig, MedianConfig
from sweep.views.progress import LiveView, rung_milestones
from sweep.driver.ledger import Ledger
from sweep.protocol import END_FIELD, EPOCH_FIELD, KEYS_FIELD, TrialStatus


def hyperparameters(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def make_trial(number: int, **params) -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"t{number}", config=dict(params), last_result={})


class Driver:
    """Calls the callbacks in the order the runner registers them: ledger, then view."""

    def __init__(self, rungs=None, total: int = 5):
        self.ledger = Ledger("val_accuracy", "max", hyperparameters, 9)
        self.stream = io.StringIO()  # not a terminal: plain lines
        self.view = LiveView(self.ledger, "demo", total, stream=self.stream, rungs=rungs)
        self.callbacks = [self.ledger, self.view]
        self.view.setup()

    def start(self, trial) -> None:
        for cb in self.callbacks:
            cb.on_trial_start(0, [], trial)

    def epoch(self, trial, epoch: int, value: float, end: str | None = None) -> None:
        result = {EPOCH_FIELD: epoch, "training_iteration": epoch, KEYS_FIELD: "val_accuracy", "val_accuracy": value}
        if end:
            result[END_FIELD] = end
        trial.last_result = result
        for cb in self.callbacks:
            cb.on_trial_result(0, [], trial, result)
            cb.on_step_end(0, [])

    def run(self, trial, curve: list[float], completed: bool) -> None:
        self.start(trial)
        for epoch, value in enumerate(curve, start=1):
            last = epoch == len(curve)
            self.epoch(trial, epoch, value, end=TrialStatus.COMPLETED if last and completed else None)
        for cb in self.callbacks:
            cb.on_trial_complete(0, [], trial)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


def test_asha_rungs_follow_grace_period_and_reduction_factor():
    assert rung_milestones(AshaConfig(type="asha"), 27) == [1, 3, 9, 27]
    assert rung_milestones(AshaConfig(type="asha"), 10) == [1, 3, 9, 10]  # the full budget closes the list
    assert rung_milestones(AshaConfig(type="asha", grace_period=2, reduction_factor=2), 16) == [2, 4, 8, 16]
    assert rung_milestones(AshaConfig(type="asha", reduction_factor=2.5), 10) == [1, 3, 7, 10]  # 2.5 -> epoch 3
    assert rung_milestones(HyperbandConfig(type="hyperband"), 9) == [1, 3, 9]
    assert rung_milestones(MedianConfig(type="median", grace_period=2), 9) == [2, 9]
    assert rung_milestones(FifoConfig(type="fifo"), 9) == []


def test_rungs_for_a_config_use_its_max_t():
    loaded = sweep_config.load(
        {
            "name": "demo",
            "data": {"source": "digits"},
            "fit": {"epochs": 30},
            "search": {"trials": 4, "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": 27},
        }
    )
    assert LiveView.rungs_for(loaded) == [1, 3, 9, 27]


def test_plain_lines_show_correct_rung_survival():
    d = Driver(rungs=[1, 3, 9])
    d.run(make_trial(0, lr=0.1), [0.5], completed=False)  # stopped at the first rung
    d.run(make_trial(1, lr=0.2), [0.4], completed=False)
    d.run(make_trial(2, lr=0.3), [0.5, 0.6, 0.7], completed=False)  # stopped at the second rung
    d.run(make_trial(3, lr=0.4), [0.5, 0.55, 0.6, 0.62], completed=False)  # passed 3, stopped before 9
    d.run(make_trial(4, lr=0.5), [0.6, 0.7, 0.8, 0.82, 0.84, 0.85, 0.86, 0.87, 0.9], completed=True)

    assert d.view.rung_counts == [5, 3, 1]
    lines = d.lines()
    assert lines[0].startswith("sweep demo: 5 trials")
    last = lines[-1]
    assert last.startswith("trial 0004 completed after 9 epoch(s): best val_accuracy=0.9 (epoch 9)")  # the number as the run name NAME-0004 has it
    assert "reached epoch>=1: 5, >=3: 3, >=9: 1" in last
    assert "completed 1, stopped early 4, failed 0 of 5" in last
    assert "best 0.9 (trial 0004: lr=0.5)" in last  # best so far with its params
    # the line after trial 2 counted what had happened by then
    after_two = next(line for line in lines if line.startswith("trial 0002 "))
    assert "reached epoch>=1: 3, >=3: 1, >=9: 0" in after_two
    assert d.view.summary_line().endswith(", eta 0:00")


def test_repeated_or_out_of_order_results_do_not_count_twice():
    d = Driver(rungs=[1, 3, 9])
    trial = make_trial(0, lr=0.1)
    d.start(trial)
    for epoch in (1, 2, 3, 3, 2, 4):  # a restarted worker may report an epoch again
        d.epoch(trial, epoch, 0.5)
    assert d.view.rung_counts == [1, 1, 0]
    assert d.view.rung_survival() == "epoch>=1: 1, >=3: 1, >=9: 0"


def test_a_trial_resumed_from_a_checkpoint_keeps_its_rungs():
    d = Driver(rungs=[1, 3, 9])
    d.run(make_trial(0, lr=0.1), [0.5, 0.6, 0.7], completed=False)
    resumed = SimpleNamespace(trial_id="new-id", config={"lr": 0.1, "_resume_trial_id": "t0"}, last_result={})
    d.start(resumed)
    d.epoch(resumed, 4, 0.75)
    assert d.view.rung_counts == [1, 1, 0]  # the same trial, not a new one


def test_trials_of_an_earlier_session_are_counted_once():
    ledger = Ledger("val_accuracy", "max", dict, 9)
    ledger.seed([
        SimpleNamespace(trial_id="a", number=0, params={}, status="completed", epochs=9, value=0.9, best_epoch=9, reason=None, checkpoint=None, run_id=None),
        SimpleNamespace(trial_id="b", number=1, params={}, status="stopped_early", epochs=1, value=0.4, best_epoch=1, reason=None, checkpoint=None, run_id=None),
    ])
    view = LiveView(ledger, "demo", 4, stream=io.StringIO(), rungs=[1, 3, 9])
    view.setup()
    assert view.rung_counts == [2, 1, 1]


def test_without_rungs_the_line_has_no_rung_part():
    d = Driver()  # the default: no scheduler milestones (FIFO)
    d.run(make_trial(0, lr=0.1), [0.5, 0.6], completed=True)
    assert d.view.rung_survival() == ""
    assert "reached" not in d.lines()[-1]


def test_quiet_prints_nothing():
    ledger = Ledger("val_accuracy", "max", dict, 9)
    stream = io.StringIO()
    view = LiveView(ledger, "demo", 2, stream=stream, quiet=True, rungs=[1, 3])
    view.setup()
    trial = make_trial(0)
    for cb in (ledger, view):
        cb.on_trial_start(0, [], trial)
        cb.on_trial_result(0, [], trial, {EPOCH_FIELD: 3, KEYS_FIELD: "val_accuracy", "val_accuracy": 0.5})
        cb.on_trial_complete(0, [], trial)
    view.stop()
    assert stream.getvalue() == ""
    assert view.rung_counts == [1, 1]  # still counted, e.g. for a later render


def test_rich_view_shows_rung_survival_and_best_params():
    from rich.console import Console

    d = Driver(rungs=[1, 3, 9])
    d.run(make_trial(0, lr=0.1), [0.5, 0.6, 0.7], completed=False)
    d.run(make_trial(1, lr=0.2), [0.4], completed=False)
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(d.view.render())
    text = console.export_text()
    assert "rung survival" in text and "epoch>=1" in text and "epoch>=9" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("│") and "2" in line and "0" in line and "1" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == ["2", "1", "0"]
    assert "best 0.7 (trial 0000: lr=0.1)" in text


def test_the_view_pickles_without_its_console():
    d = Driver(rungs=[1, 3])
    d.run(make_trial(0, lr=0.1), [0.5, 0.6, 0.7], completed=True)
    copy = pickle.loads(pickle.dumps(d.view))
    assert copy.console is None and copy.rung_counts == [1, 1]


@pytest.mark.parametrize("epochs,expected", [(0, [0, 0, 0]), (2, [1, 0, 0]), (9, [1, 1, 1]), (100, [1, 1, 1])])
def test_epoch_boundaries(epochs, expected):
    d = Driver(rungs=[1, 3, 9])
    trial = make_trial(0)
    d.start(trial)
    d.epoch(trial, epochs, 0.1)
    assert d.view.rung_counts == expected


def test_eta_of_a_resumed_sweep_uses_this_sessions_rate():
    driver = Driver(total=8)
    priors = [
        SimpleNamespace(trial_id=f"p{i}", number=i, params={}, status=TrialStatus.COMPLETED, epochs=9, value=0.5,
                        best_epoch=9, reason=None, checkpoint=None, run_id=None)
        for i in range(4)
    ]
    driver.ledger.seed(priors)
    assert driver.view.eta() is None, "nothing ended in this session yet: no rate to go by"
    driver.ledger.started -= 10.0  # this session has run 10 s
    driver.run(make_trial(4, lr=0.1), [0.6, 0.7], completed=True)
    eta = driver.view.eta()
    assert eta is not None and 29 <= eta <= 32, "3 trials left at 10 s each, not at the earlier session's pace"


def test_a_failed_trials_reason_is_read_from_its_local_error_file_before_storage_has_it(tmp_path):
    """Tune writes error.txt locally and syncs it to storage later; on_trial_error must not
    see 'unknown error' in between (a CI run did)."""
    from sweep.driver.ledger import error_summary, traceback_tail

    local = tmp_path / "error.txt"
    local.write_text(
        "Failure # 1 (occurred at 2026-11-26)\nray::ImplicitFunc.train()\n"
        '  File "/site-packages/ray/tune/trainable.py", line 1, in train\n    result = self.step()\n'
        '  File "/user/faulty_models.py", line 9, in build\n    raise RuntimeError("faulty factory refused to build")\n'
        "RuntimeError: faulty factory refused to build\n"
    )
    not_synced_yet = SimpleNamespace(error_file=str(local), get_error=lambda: None)
    assert error_summary(not_synced_yet) == "RuntimeError: faulty factory refused to build"
    assert "faulty_models.py" in traceback_tail(not_synced_yet) and "/ray/" not in traceback_tail(not_synced_yet)
    elsewhere = SimpleNamespace(error_file=None, get_error=lambda: "ValueError: from storage")
    assert error_summary(elsewhere) == "ValueError: from storage"
    ours = SimpleNamespace(error_file=None, get_error=lambda: "ray::ImplicitFunc.train() (pid=1)\nsweep.errors.InputError: model.builder: expected 'mm:build' to build a model")
    assert error_summary(ours) == "model.builder: expected 'mm:build' to build a model", "our own error class is not part of the reason"
    leaky = SimpleNamespace(error_file=None, get_error=lambda: "ConnectionError: POST https://carol:HUNTERpw@hooks.example/x?token=HUNTERtok failed: 401")
    assert "HUNTER" not in error_summary(leaky) and "HUNTER" not in traceback_tail(leaky), error_summary(leaky)
    tf_error = ("tensorflow.python.framework.errors_impl.InvalidArgumentError: Graph execution error:\n"
                "Received a label value of 4 which is outside the valid range of [0, 4).  Label values: 0 4 1\n"
                "\t [[{{node compile_loss/sparse_categorical_crossentropy/SparseSoftmaxCrossEntropyWithLogits}}]] [Op:__inference_multi_step_on_iterator_1236]")
    reason = error_summary(SimpleNamespace(error_file=None, get_error=lambda: tf_error))
    assert reason.startswith("Received a label value of 4 which is outside the valid range"), reason


def test_elapsed_counts_from_the_commands_start():
    """The runner passes when run()/resume() was called: Ray's start-up is in the elapsed time."""
    import time

    from rich.console import Console

    ledger = Ledger("val_accuracy", "max", hyperparameters, 9)
    view = LiveView(ledger, "demo", 3, stream=io.StringIO(), started=time.time() - 75)
    assert view.elapsed() >= 75 and "elapsed 1:15" in view.summary_line()
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(view.render())
    assert "elapsed 1:15" in console.export_text()
    assert LiveView(ledger, "demo", 3, stream=io.StringIO()).elapsed() < 5, "no start given: the ledger's"


def test_the_top_trials_table_names_trials_as_mlflow_does():
    from rich.console import Console

    d = Driver()
    d.run(make_trial(0, lr=0.1), [0.5, 0.6], completed=True)
    d.run(make_trial(1, lr=0.2), [0.7, 0.8], completed=True)
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(d.view.render())
    text = console.export_text()
    rows = [line for line in text.splitlines() if "completed" in line and "│" in line]
    assert [row.strip("│ ").split("│")[0].strip() for row in rows] == ["0001", "0000"]


def test_a_warm_executors_trial_traceback_shows_the_trials_frames_without_colours_or_sweeps_wrapper(tmp_path):
    """A trial on a warm executor fails inside the executor; Tune's error text has the trainable's
    frames, Ray's coloured ``ray::TrialExecutor.next()`` header, then the trial's own frames."""
    from sweep.driver.ledger import traceback_tail

    local = tmp_path / "error.txt"
    local.write_text(
        "Failure # 1 (occurred at 2026-11-30)\n"
        "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=127.0.0.1, repr=sweep_trial)\n"
        '  File "/repo/sweep/worker/launch.py", line 55, in sweep_trial\n    if run_on_executor(executors, hp):\n'
        '  File "/repo/sweep/worker/executor.py", line 204, in run_on_executor\n    event = ray.get(executor.next.remote(owner))\n'
        "ray.exceptions.RayTaskError(RuntimeError): \x1b[36mray::TrialExecutor.next()\x1b[39m (pid=2, repr=<TrialExecutor>)\n"
        '  File "/user/wbug.py", line 4, in build\n    raise RuntimeError("only-on-workers bug")\n'
        "RuntimeError: only-on-workers bug\n"
    )
    tail = traceback_tail(SimpleNamespace(error_file=str(local), get_error=lambda: None))
    assert tail.splitlines() == ['  File "/user/wbug.py", line 4, in build', '    raise RuntimeError("only-on-workers bug")', "RuntimeError: only-on-workers bug"], tail


def test_a_trial_line_says_its_value_is_the_best_epochs_and_which_epoch():
    """A trial that peaked early printed its best value bare beside "after 3 epoch(s)", read as its last."""
    d = Driver(rungs=[])
    d.run(make_trial(0, lr=0.1), [0.82, 0.77, 0.59], completed=True)
    line = [line for line in d.lines() if line.startswith("trial 0000")][0]
    assert line.startswith("trial 0000 completed after 3 epoch(s): best val_accuracy=0.82 (epoch 1)  |"), line


def test_durations_round_to_the_nearest_second():
    from sweep.views.progress import format_duration

    assert [format_duration(s) for s in (0.953, 8.981, 59.6, 3599.5, 3725.2)] == ["0:01", "0:09", "1:00", "1:00:00", "1:02:05"]
