"""Warm start: earlier trials mapped onto a changed space (pure parts and the seeded searcher)."""

from __future__ import annotations

from sweep.spec.config import SearchConfig
from sweep.search.warmstart import PastTrial, frozen_history, map_params, plan

SPACE = SearchConfig(
    trials=4,
    space={
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        "layers": {"type": "int", "low": 1, "high": 3},
    },
)


def test_values_outside_the_new_space_and_removed_params_are_dropped():
    dropped: dict[str, str] = {}
    values, complete = map_params(SPACE, {"learning_rate": "0.5", "optimizer": "adam", "units": "64", "layers": "2", "momentum": "0.3"}, dropped)
    assert values == {"optimizer": "adam", "layers": 2}
    assert not complete, "learning_rate fell outside the new range"
    assert dropped == {
        "learning_rate": "value 0.5 outside this space",
        "units": "not in this space",
        "momentum": "its when: condition does not hold in this space",
    }


def test_plan_keeps_only_full_budget_trials_best_first():
    trials = [
        PastTrial({"learning_rate": "0.001", "optimizer": "adam", "layers": "1"}, "completed", 0.80, 0),
        PastTrial({"learning_rate": "0.002", "optimizer": "sgd", "momentum": "0.5", "layers": "2"}, "completed", 0.90, 1),
        PastTrial({"learning_rate": "0.003", "optimizer": "adam", "layers": "3"}, "stopped_early", 0.95, 2),
        PastTrial({"learning_rate": "0.004", "optimizer": "adam", "layers": "4"}, "completed", 0.99, 3),  # layers out of range
        PastTrial({"learning_rate": "0.005", "optimizer": "adam", "layers": "1"}, "failed", None, 4),
    ]
    warm = plan(SPACE, trials, "max", "earlier")
    assert [value for _, value in warm.history] == [0.90, 0.80], "stopped-early and incomplete trials are not final results"
    assert warm.points[0] == {"learning_rate": 0.004, "optimizer": "adam"}, "the best config's fitting values re-run first"
    assert warm.points[1] == {"learning_rate": 0.002, "optimizer": "sgd", "momentum": 0.5, "layers": 2}
    assert len(warm.points) == 2, "at most half of the new trials are re-runs"
    assert warm.dropped == {"layers": "value 4 outside this space"}


def test_history_seeds_the_searchers_study():
    from sweep.search.space import make_searcher

    warm = plan(SPACE, [PastTrial({"learning_rate": "0.001", "optimizer": "adam", "layers": "1"}, "completed", 0.7, 0)], "max", "earlier")
    searcher = make_searcher(SPACE, "val_accuracy", "max", points_to_evaluate=warm.points, history=frozen_history(SPACE, warm))
    study = searcher._ot_study  # the study Ray's OptunaSearch made (no public accessor)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert [(t.params, t.value) for t in finished] == [({"learning_rate": 0.001, "optimizer": "adam", "layers": 1}, 0.7)]
    config = searcher.suggest("trial-1")
    assert config == {"learning_rate": 0.001, "optimizer": "adam", "layers": 1}, "the earlier best is the first suggestion"


def test_prepare_reads_mlflow_and_warns_naming_the_dropped_params(mlflow_uri, caplog):
    from fake_sweeps import make_sweep  # a sweep laid out in MLflow as the tracker writes it (tests/ is on sys.path)

    from sweep.search.warmstart import prepare

    make_sweep(mlflow_uri, "earlier")  # completed trials: sgd+momentum 0.9 (0.8), sgd+momentum 0.5 (0.85), adam (0.7)
    search = SearchConfig(trials=4, warm_start="earlier", space={
        "learning_rate": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    })
    with caplog.at_level("WARNING", logger="sweep.warmstart"):
        warm = prepare(search, "val_accuracy", "max", mlflow_uri)
    assert "momentum (not in this space)" in caplog.text and "learning_rate (value 0.1 outside this space)" in caplog.text
    assert warm.points == [{"optimizer": "sgd"}, {"learning_rate": 0.01, "optimizer": "sgd"}]
    assert [value for _, value in warm.history] == [0.8, 0.7]
