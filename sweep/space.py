"""Search-space entries -> Optuna: samplers and the define-by-run function Ray's OptunaSearch runs.

Define-by-run is what makes conditional entries real: an entry with ``when:`` is only
suggested when its parents have the wanted values, so a trial with ``optimizer: adam`` never
has a ``momentum`` at all (not a dummy value that TPE would learn from).
"""

from __future__ import annotations

from typing import Any, Callable

import optuna

from sweep.config import CategoricalParam, FloatParam, IntParam, SearchConfig, condition_order


def _tpe(search: SearchConfig) -> optuna.samplers.BaseSampler:
    # multivariate+group model the joint (and conditional) structure; constant_liar keeps
    # parallel workers from being handed the same point while results are pending.
    return optuna.samplers.TPESampler(seed=search.seed, multivariate=True, group=True, constant_liar=True)


def _random(search: SearchConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=search.seed)


def _cmaes(search: SearchConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(
        seed=search.seed, independent_sampler=optuna.samplers.RandomSampler(seed=search.seed), warn_independent_sampling=False
    )


def _grid(search: SearchConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler(grid_points(search), seed=search.seed)


SAMPLERS: dict[str, Callable[[SearchConfig], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "cmaes": _cmaes,
    "grid": _grid,
}


def make_sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    return SAMPLERS[search.sampler](search)


def grid_points(search: SearchConfig) -> dict[str, list[Any]]:
    points: dict[str, list[Any]] = {}
    for name, param in search.space.items():
        if isinstance(param, CategoricalParam):
            points[name] = list(param.choices)
        elif isinstance(param, IntParam):
            points[name] = list(range(param.low, param.high + 1, param.step))
    return points


def grid_size(search: SearchConfig) -> int:
    size = 1
    for values in grid_points(search).values():
        size *= len(values)
    return size


def _condition_holds(when: dict[str, Any] | None, chosen: dict[str, Any]) -> bool:
    for parent, wanted in (when or {}).items():
        if parent not in chosen:
            return False
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if chosen[parent] not in allowed:
            return False
    return True


class DefineByRun:
    """Suggests every entry whose ``when:`` holds, parents first (a picklable callable:
    Ray saves the searcher, this function included, with the experiment's state)."""

    def __init__(self, search: SearchConfig):
        self.space = dict(search.space)
        self.order = condition_order(search.space)

    def __call__(self, trial: optuna.Trial) -> None:
        chosen: dict[str, Any] = {}
        for name in self.order:
            param = self.space[name]
            if not _condition_holds(param.when, chosen):
                continue
            if isinstance(param, FloatParam):
                chosen[name] = trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
            elif isinstance(param, IntParam):
                chosen[name] = trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
            else:
                chosen[name] = trial.suggest_categorical(name, param.choices)
        return None


def define_by_run(search: SearchConfig) -> DefineByRun:
    """The function OptunaSearch calls per trial to suggest the (conditional) parameters."""
    return DefineByRun(search)


def make_searcher(search: SearchConfig, metric: str, mode: str, points_to_evaluate: list[dict] | None = None) -> Any:
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=define_by_run(search), metric=metric, mode=mode, sampler=make_sampler(search), points_to_evaluate=points_to_evaluate
    )
    if search.max_concurrent:
        return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
    return searcher


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters in a Tune trial config (no Nones, no private keys)."""
    return {k: v for k, v in config.items() if v is not None and not str(k).startswith("_")}
