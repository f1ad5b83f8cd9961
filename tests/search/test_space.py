"""sweep.space: samplers, conditional define-by-run, grid, OptunaSearch (no Ray cluster)."""

from __future__ import annotations

import math
import pickle
from typing import Any

import optuna
import pytest

from sweep.search import space
from sweep.spec.config import SearchConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

CONDITIONAL = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": "sgd"}},
    "rho": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": ["rmsprop", "sgd"]}},
    # nested: only under sgd, and only when momentum was suggested at all
    "nesterov": {"type": "categorical", "choices": [True, False], "when": {"optimizer": "sgd"}},
    "dampening": {"type": "float", "low": 0.0, "high": 0.5, "when": {"nesterov": False}},
}


def search(space_: dict[str, Any], sampler: str = "tpe", seed: int | None = 0, **kwargs: Any) -> SearchConfig:
    return SearchConfig(sampler=sampler, seed=seed, space=space_, **kwargs)


def toy_objective(config: SearchConfig):
    suggest = space.define_by_run(config)

    def objective(trial: optuna.Trial) -> float:
        assert suggest(trial) is None
        p = trial.params
        return sum(float(v) if isinstance(v, (int, float)) else len(str(v)) for v in p.values())

    return objective


def run(config: SearchConfig, n_trials: int) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=space.make_sampler(config), direction="minimize")
    study.optimize(toy_objective(config), n_trials=n_trials)
    return [t.params for t in study.trials]


# ---------------------------------------------------------------------------------------------
# conditions


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_conditional_entries_only_when_their_condition_holds(sampler):
    trials = run(search(CONDITIONAL, sampler), 40)
    seen = set()
    for params in trials:
        opt = params["optimizer"]
        seen.add(opt)
        assert ("momentum" in params) == (opt == "sgd"), params
        assert ("nesterov" in params) == (opt == "sgd"), params
        assert ("rho" in params) == (opt in ("rmsprop", "sgd")), params  # list-valued when
        # nested: dampening needs nesterov suggested AND False
        assert ("dampening" in params) == (opt == "sgd" and params.get("nesterov") is False), params
        assert {"learning_rate", "batch_size", "optimizer"} <= set(params)
    assert seen == {"adam", "sgd", "rmsprop"}


def test_nested_condition_on_a_parent_that_was_not_suggested():
    suggest = space.define_by_run(search(CONDITIONAL))
    fixed = {"learning_rate": 0.01, "batch_size": 32, "optimizer": "adam"}
    trial = optuna.trial.FixedTrial(fixed)
    suggest(trial)  # would raise if it asked for momentum/nesterov/dampening (not in fixed)
    fixed = {**fixed, "optimizer": "sgd", "momentum": 0.5, "rho": 0.9, "nesterov": True}
    suggest(optuna.trial.FixedTrial(fixed))  # nesterov True: no dampening asked


def test_children_are_suggested_after_their_parents_whatever_the_file_order():
    space_ = {
        "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    }
    trials = run(search(space_, "random"), 20)
    assert {p["optimizer"] for p in trials} == {"adam", "sgd"}
    for params in trials:
        assert ("momentum" in params) == (params["optimizer"] == "sgd")


def test_int_parent_and_boolean_values_are_not_numbers():
    space_ = {
        "layers": {"type": "int", "low": 1, "high": 3},
        "width2": {"type": "int", "low": 8, "high": 16, "when": {"layers": [2, 3]}},
        "flag": {"type": "categorical", "choices": [True, False]},
        "extra": {"type": "int", "low": 0, "high": 1, "when": {"flag": True}},
        "count": {"type": "categorical", "choices": [0, 1]},
    }
    trials = run(search(space_, "random"), 40)
    assert {p["layers"] for p in trials} == {1, 2, 3} and {p["flag"] for p in trials} == {True, False}
    for params in trials:
        assert ("width2" in params) == (params["layers"] >= 2)
        assert ("extra" in params) == (params["flag"] is True)


# ---------------------------------------------------------------------------------------------
# seeds


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_same_seed_same_suggestions_different_seed_different(sampler):
    space_ = {k: v for k, v in CONDITIONAL.items()}
    space_["units"] = {"type": "int", "low": 16, "high": 256, "log": True}
    space_["dropout"] = {"type": "float", "low": 0.0, "high": 0.5}
    first = run(search(space_, sampler, seed=7), 15)
    again = run(search(space_, sampler, seed=7), 15)
    other = run(search(space_, sampler, seed=8), 15)
    assert first == again
    assert first != other


def test_grid_order_follows_the_seed():
    space_ = {"a": {"type": "int", "low": 1, "high": 5}, "b": {"type": "categorical", "choices": ["x", "y"]}}
    assert run(search(space_, "grid", seed=1), 10) == run(search(space_, "grid", seed=1), 10)
    assert run(search(space_, "grid", seed=1), 10) != run(search(space_, "grid", seed=2), 10)


# ---------------------------------------------------------------------------------------------
# grid


def test_grid_enumerates_the_full_grid_without_repeats():
    space_ = {
        "units": {"type": "int", "low": 16, "high": 64, "step": 16},  # 16, 32, 48, 64
        "batch_size": {"type": "categorical", "choices": [32, 64]},
        "activation": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    }
    config = search(space_, "grid")
    assert space.grid_size(config) == 4 * 2 * 3
    trials = run(config, 24)
    keys = {tuple(sorted(p.items())) for p in trials}
    assert len(keys) == 24
    assert {p["units"] for p in trials} == {16, 32, 48, 64}
    assert keys == {tuple(sorted(c.items())) for c in space.grid_configs(config)}


def test_grid_respects_conditions():
    space_ = {
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "momentum": {"type": "categorical", "choices": [0.0, 0.9], "when": {"optimizer": "sgd"}},
        "nesterov": {"type": "categorical", "choices": [True, False], "when": {"momentum": 0.9}},
        "layers": {"type": "int", "low": 1, "high": 2},
    }
    config = search(space_, "grid")
    # adam x 2 layers + sgd x (momentum 0.0 + momentum 0.9 x 2 nesterov) x 2 layers
    assert space.grid_size(config) == 2 + (1 + 2) * 2 == len(space.grid_configs(config)) == 8
    trials = run(config, 8)
    assert len({tuple(sorted(p.items())) for p in trials}) == 8
    for params in trials:
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("nesterov" in params) == (params.get("momentum") == 0.9)


def test_grid_repeats_only_after_it_is_exhausted():
    config = search({"a": {"type": "categorical", "choices": [1, 2, 3]}}, "grid")
    trials = [p["a"] for p in run(config, 5)]
    assert sorted(trials[:3]) == [1, 2, 3]
    assert set(trials[3:]) <= {1, 2, 3}


def test_grid_size_of_a_large_grid_is_counted_not_listed():
    config = search({f"p{i}": {"type": "int", "low": 0, "high": 99} for i in range(5)}, "grid")
    assert space.grid_size(config) == 100**5


# ---------------------------------------------------------------------------------------------
# distributions


def test_log_step_and_inclusive_int_ranges():
    space_ = {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
        "units": {"type": "int", "low": 8, "high": 64, "step": 8},
        "layers": {"type": "int", "low": 1, "high": 3},
        "width": {"type": "int", "low": 2, "high": 1024, "log": True},
    }
    config = search(space_, "random", seed=3)
    study = optuna.create_study(sampler=space.make_sampler(config))
    study.optimize(toy_objective(config), n_trials=200)
    dists = study.trials[0].distributions
    assert dists["lr"].log and not dists["dropout"].log
    assert dists["dropout"].step == 0.1 and dists["units"].step == 8 and dists["width"].log
    params = [t.params for t in study.trials]
    assert {p["layers"] for p in params} == {1, 2, 3}  # both ends included
    assert {p["units"] for p in params} == set(range(8, 65, 8))
    assert all(round(p["dropout"] * 10, 9).is_integer() for p in params)
    assert all(1e-5 <= p["lr"] <= 1e-1 for p in params)
    # log-uniform: about as many values below 1e-3 as above (uniform would put ~1% below)
    below = sum(p["lr"] < 10 ** -3 for p in params)
    assert 60 < below < 140
    assert all(isinstance(p["units"], int) and isinstance(p["layers"], int) for p in params)
    assert math.isclose(max(p["dropout"] for p in params), 0.5) or max(p["dropout"] for p in params) <= 0.5


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "grid"])
def test_samplers_registry(sampler):
    space_ = {"a": {"type": "int", "low": 1, "high": 3}, "b": {"type": "categorical", "choices": ["x"]}}
    made = space.make_sampler(search(space_, sampler))
    assert isinstance(made, optuna.samplers.BaseSampler)
    assert set(space.SAMPLERS) == {"tpe", "random", "cmaes", "grid"}


def test_tpe_models_conditional_groups_and_parallel_trials():
    sampler = space.make_sampler(search(CONDITIONAL, "tpe"))
    assert isinstance(sampler, space.BoundedHistorySampler)
    tpe = sampler.base
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._multivariate and tpe._group and tpe._constant_liar
    assert sampler.bounded._multivariate and sampler.bounded._group and not sampler.bounded._constant_liar


def test_tpe_decomposes_groups_only_where_the_space_is_conditional():
    static = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}, "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}
    assert not space.is_conditional(search(static, "tpe"))
    assert space.is_conditional(search(CONDITIONAL, "tpe"))
    sampler = space.make_sampler(search(static, "tpe"))
    assert sampler.base._multivariate and sampler.base._constant_liar and not sampler.base._group
    # on a static space the decomposition is one group: the suggestions are the same with or without it
    grouped = _run_study(_tpe(5), 40)
    plain = _run_study(optuna.samplers.TPESampler(seed=5, multivariate=True, group=False, constant_liar=True), 40)
    assert [t.params for t in grouped.trials] == [t.params for t in plain.trials]


# ---------------------------------------------------------------------------------------------
# Ray's OptunaSearch (no ray.init needed to suggest)


@pytest.mark.parametrize("sampler", ["tpe", "grid"])
def test_optuna_search_accepts_define_by_run_and_drops_inactive_entries(sampler, recwarn):
    space_ = {
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "momentum": {"type": "categorical", "choices": [0.0, 0.9], "when": {"optimizer": "sgd"}},
        "layers": {"type": "int", "low": 1, "high": 2},
    }
    config = search(space_, sampler, seed=0)
    searcher = space.make_searcher(config, "val_accuracy", "max")
    from ray.tune.search.optuna import OptunaSearch

    assert isinstance(searcher, OptunaSearch)
    suggestions = []
    for i in range(6):
        suggestion = searcher.suggest(f"trial_{i}")
        suggestions.append(suggestion)
        assert ("momentum" in suggestion) == (suggestion["optimizer"] == "sgd"), suggestion
        searcher.on_trial_complete(f"trial_{i}", {"val_accuracy": 0.1 * i, "training_iteration": 1})
    if sampler == "grid":  # 2 (adam) + 2 x 2 (sgd) = 6 distinct configurations
        assert len({tuple(sorted(s.items())) for s in suggestions}) == 6
    pickle.loads(pickle.dumps(searcher))  # Ray checkpoints the searcher


def test_optuna_search_same_seed_same_suggestions():
    def suggestions(seed: int) -> list[dict]:
        searcher = space.make_searcher(search(CONDITIONAL, "tpe", seed=seed), "val_loss", "min")
        out = []
        for i in range(12):
            out.append(searcher.suggest(str(i)))
            searcher.on_trial_complete(str(i), {"val_loss": float(i % 5)})
        return out

    assert suggestions(1) == suggestions(1)
    assert suggestions(1) != suggestions(2)


def test_max_concurrent_wraps_in_a_concurrency_limiter():
    from ray.tune.search import ConcurrencyLimiter

    limited = space.make_searcher(search(CONDITIONAL, max_concurrent=2), "val_loss", "min")
    assert isinstance(limited, ConcurrencyLimiter)
    assert limited.suggest("a") is not None and limited.suggest("b") is not None
    assert limited.suggest("c") is None  # two running already


def test_points_to_evaluate_come_first_and_grid_skips_them():
    space_ = {"a": {"type": "categorical", "choices": [1, 2, 3]}}
    searcher = space.make_searcher(search(space_, "grid"), "m", "max", points_to_evaluate=[{"a": 2}])
    got = [searcher.suggest(str(i))["a"] for i in range(3)]
    assert got[0] == 2 and sorted(got) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# hyperparameters


def test_hyperparameters_drops_none_and_private_keys():
    config = {"learning_rate": 0.01, "momentum": None, "_trial_dir": "/tmp", "optimizer": "sgd", "flag": False, "zero": 0}
    assert space.hyperparameters(config) == {"learning_rate": 0.01, "optimizer": "sgd", "flag": False, "zero": 0}
    assert space.hyperparameters({}) == {}


def _run_study(sampler: optuna.samplers.BaseSampler, trials: int) -> optuna.Study:
    """A maximizing study of a known optimum (lr 1e-2 with adam), ask/tell as Ray's OptunaSearch does."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(trials):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        study.tell(trial, -abs(math.log10(lr) + 2) - (0.3 if optimizer == "sgd" else 0.0))
    return study


def _tpe(seed: int, liar: bool = True) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=liar)


def test_a_short_sweep_suggests_exactly_what_plain_tpe_would():
    bounded = _run_study(space.BoundedHistorySampler(_tpe(3), _tpe(4, liar=False), limit=1000), 30)
    plain = _run_study(_tpe(3), 30)
    assert [t.params for t in bounded.trials] == [t.params for t in plain.trials]


def test_past_its_limit_tpe_models_the_best_and_the_latest_trials_only():
    sampler = space.BoundedHistorySampler(_tpe(3), _tpe(4, liar=False), limit=40, keep_best=10)
    study = _run_study(sampler, 120)
    model = sampler._model
    assert model is not None
    modeled = model.get_trials(deepcopy=False)
    assert 40 <= len(modeled) <= 40 + 40 // 4  # bounded: rebuilt every limit // 4 trials
    best_values = sorted((t.value for t in study.trials), reverse=True)[:10]
    assert set(best_values) <= {t.value for t in modeled}  # TPE's good group is never dropped
    assert study.best_value > -0.15  # and the search still closes in on the optimum
    restored = pickle.loads(pickle.dumps(sampler))  # Ray saves the searcher, sampler included
    assert restored.limit == 40 and len(restored._model.trials) == len(modeled)
