"""sweep.schedulers: Ray's schedulers, choosing the next trial among the live ones.

A real Tune run on the session's local Ray: at every step of Tune's loop the fast choice
must return exactly what Tune's own scan of the whole experiment returns.
"""

from __future__ import annotations

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from sweep.spec import config as config_module
from sweep.search import schedulers


class ComparedWithTheScan(schedulers.LiveASHAScheduler):
    """Answers with the fast choice and records whether Tune's scan agreed."""

    choices: list[tuple[object, object]] = []
    pending_at_once: list[int] = []

    def choose_trial_to_run(self, tune_controller):
        mine = super().choose_trial_to_run(tune_controller)
        scanned = FIFOScheduler.choose_trial_to_run(self, tune_controller)
        ComparedWithTheScan.choices.append((mine, scanned))
        ComparedWithTheScan.pending_at_once.append(sum(t.status == Trial.PENDING for t in tune_controller.get_live_trials()))
        return mine


def test_the_next_trial_is_the_one_tunes_scan_would_choose(ray_session, tmp_path):
    def _three_epochs(config: dict) -> None:  # defined here: pickled by value for the workers
        for epoch in range(1, 4):
            tune.report({"score": config["x"] * epoch, "epoch": epoch})

    tuner = tune.Tuner(
        _three_epochs,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            # 4 live trials on 2 CPUs: two pending at once, so the choice among several is exercised
            metric="score", mode="max", num_samples=12, max_concurrent_trials=4, reuse_actors=True,
            scheduler=ComparedWithTheScan(time_attr="epoch", max_t=3, grace_period=1, reduction_factor=3),
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 12 and not results.errors
    choices = ComparedWithTheScan.choices
    assert any(mine is not None for mine, _ in choices)  # it did choose trials
    assert max(ComparedWithTheScan.pending_at_once) >= 2, "several pending trials at once, at some step"
    assert all(mine is scanned for mine, scanned in choices)


def test_every_fifo_based_scheduler_of_a_sweep_file_chooses_among_live_trials():
    base = {"name": "s", "data": {"source": "synthetic"}, "model": {"builder": "mlp"}, "search": {"space": {"lr": {"type": "float", "low": 0.001, "high": 0.1}}}}
    for kind in ("asha", "median", "fifo"):
        config = config_module.load({**base, "scheduler": {"type": kind}}, {})
        assert isinstance(schedulers.build(config), schedulers.ChoosesAmongLiveTrials), kind


def test_a_resumed_sweeps_asha_keeps_the_rungs_its_earlier_session_filled():
    """A resumed sweep built a new ASHA with empty rungs: an interrupted trial that the
    uninterrupted sweep stopped at epoch 1 (val_accuracy 0.15 against 0.6-0.9) trained all its
    epochs after `sweep resume`. The earlier trials' results are recorded in the rungs first."""
    from ray.tune.experiment import Trial

    from sweep.search import schedulers
    from sweep.spec.config import load

    def decision(history, mode="max", value=0.15):
        config = load({"name": "x", "data": {"source": "digits"}, "fit": {"epochs": 9}, "objective": {"metric": "val_accuracy", "mode": mode},
                       "search": {"space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1}}},
                       "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3}})
        scheduler = schedulers.build(config, history=history)
        scheduler.set_search_properties("val_accuracy", mode)
        trial = Trial("resumed", stub=True)
        scheduler.on_trial_add(None, trial)
        return scheduler.on_trial_result(None, trial, {"sweep_epoch": 1, "val_accuracy": value})

    earlier = [{1: 0.9, 2: 0.92, 3: 0.95}, {1: 0.8, 2: 0.85, 3: 0.9}, {1: 0.7}, {1: 0.6}]
    assert decision(()) == "CONTINUE"  # empty rungs: nothing to be cut against
    assert decision(earlier) == "STOP"
    assert decision(earlier, value=0.95) == "CONTINUE"
    assert decision([{1: 0.1}, {1: 0.2}, {1: 0.3}], mode="min", value=0.9) == "STOP"  # a loss: lower is better
    fifo = load({"name": "x", "data": {"source": "digits"}, "search": {"space": {"units": {"type": "int", "low": 1, "high": 4}}}, "scheduler": {"type": "fifo"}})
    assert schedulers.seed_rungs(schedulers.build(fifo), earlier, "max") == 0  # nothing to seed
