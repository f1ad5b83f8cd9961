"""Search-space entries -> Optuna: samplers and the define-by-run function Ray's OptunaSearch runs.

Define-by-run is what makes conditional entries real: an entry with ``when:`` is only
suggested when its parents were suggested and have the wanted values, so a trial with
``optimizer: adam`` never has a ``momentum`` at all (not a dummy value that TPE would learn
from, nor a value the trial would log as if it mattered).

Samplers (``search.sampler``):

* ``tpe``: ``TPESampler(multivariate=True, group=True, constant_liar=True)``. Multivariate TPE
  models the parameters jointly; ``group`` splits the history into the sub-spaces that
  conditional entries create (trials with and without ``momentum``) instead of dropping to
  independent sampling (on only where the space has a ``when:``, see :func:`is_conditional`);
  ``constant_liar`` keeps parallel trials apart while results are pending.
  Past 1,000 finished trials it models the best 250 and the latest 750
  (:class:`BoundedHistorySampler`), so a suggestion's cost stops growing with the sweep.
* ``random``: ``RandomSampler``.
* ``cmaes``: ``CmaEsSampler`` for the numeric parameters every trial has; categorical and
  conditional entries fall back to a seeded ``RandomSampler`` (quietly).
* ``grid``: every *distinct* configuration once, in a seeded shuffled order. Conditions are
  respected: ``momentum`` values are only crossed with ``optimizer: sgd``, so ``adam`` is not
  run once per momentum value. After the grid is exhausted configurations repeat, so callers
  should cap trials at :func:`grid_size`.

``search.seed`` goes into the sampler (and nowhere else): the same seed gives the same sequence
of suggestions for the same sequence of results.
"""

from __future__ import annotations

import random
import warnings
from typing import Any, Callable, Iterator, Mapping

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from sweep.spec.config import CategoricalParam, FloatParam, IntParam, SearchConfig, condition_order
from sweep.protocol import Objective

__all__ = [
    "SAMPLERS",
    "DefineByRun",
    "define_by_run",
    "grid_configs",
    "grid_size",
    "hyperparameters",
    "make_sampler",
    "make_searcher",
]


def _tpe(search: SearchConfig) -> BaseSampler:
    group = is_conditional(search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # ``group``
        tpe = optuna.samplers.TPESampler(seed=search.seed, multivariate=True, group=group, constant_liar=True)
        # past the history limit: the same model without the liar (the modeling study has no running trials)
        bounded = optuna.samplers.TPESampler(
            seed=None if search.seed is None else search.seed + 1, multivariate=True, group=group, constant_liar=False
        )
    return BoundedHistorySampler(tpe, bounded)


def is_conditional(search: SearchConfig) -> bool:
    """Whether some entry has a ``when:``, i.e. trials can have different sets of parameters.

    Only then does TPE's ``group`` do anything: on a space where every trial has every
    parameter the decomposition is one group, the whole space, and the suggestions are the
    same as without it (checked: 1,000 of them, same seed, identical). But it re-decomposes
    the whole history on every suggestion, which cost 1.2 of 5.1 ms per suggestion at 1,000
    trials here; so it is on for conditional spaces only.
    """
    return any(param.when for param in search.space.values())


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class BoundedHistorySampler(BaseSampler):
    """A sampler that models at most about ``limit`` finished trials, so a suggestion costs
    the same at trial 10,000 as at trial 1,000.

    TPE's cost per suggestion grows with the history it models: measured here (3 params,
    multivariate + group + constant_liar) 1.4 ms with 100 finished trials, 5.5 ms with 1,000,
    15.5 ms with 3,000 and 60 ms with 10,000. Up to ``limit`` finished trials this wrapper
    passes the real study through (the sampler behaves exactly as without it). Beyond, the
    base sampler sees a *modeling study* holding the ``keep_best`` best finished trials and
    the most recent rest, rebuilt every ``limit // 4`` trials: TPE's "good" group (at most
    the best 25 trials) is then exactly what it would be with the whole history, and the
    "bad" group is estimated from a recent sample. The modeling study has no running trials,
    so past the limit ``bounded`` (the same sampler without ``constant_liar``, which writes
    to the running trial in the study it is given) does the sampling. Only public Optuna
    APIs are used.
    """

    def __init__(self, base: BaseSampler, bounded: BaseSampler, limit: int = 1000, keep_best: int = 250):
        self.base, self.bounded, self.limit, self.keep_best = base, bounded, limit, keep_best
        self._finished: int | None = None  # finished trials in the real study (counted once, then tracked)
        self._model: optuna.Study | None = None
        self._model_added = 0

    # -- what Optuna calls ------------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        sampler, seen = self._modeling(study)
        return sampler.infer_relative_search_space(seen, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        sampler, seen = self._modeling(study)
        return sampler.sample_relative(seen, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        sampler, seen = self._modeling(study)
        return sampler.sample_independent(seen, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self.base.after_trial(study, trial, state, values)
        if state not in FINISHED:
            return
        if self._finished is not None:
            self._finished += 1
        if self._model is not None:
            self._model.add_trial(optuna.trial.create_trial(
                params=trial.params, distributions=trial.distributions, values=values, state=state,
                user_attrs=trial.user_attrs, system_attrs=trial.system_attrs,
            ))
            self._model_added += 1

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self.bounded.reseed_rng()

    # -- the modeling study -----------------------------------------------------------------
    def _modeling(self, study: optuna.Study) -> tuple[BaseSampler, optuna.Study]:
        """The sampler and the study it models: the real study while it is small; past
        ``limit`` finished trials, the bounded one."""
        if self._finished is None:
            self._finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        if self._finished <= self.limit:
            return self.base, study
        if self._model is None or self._model_added >= self.limit // 4:
            self._model, self._model_added = self._rebuild(study), 0
        return self.bounded, self._model

    def _rebuild(self, study: optuna.Study) -> optuna.Study:
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        ranked = sorted((t for t in finished if t.value is not None), key=lambda t: sign * t.value)
        best = ranked[: self.keep_best]
        chosen = {t.number for t in best}
        recent = [t for t in reversed(finished) if t.number not in chosen][: self.limit - len(best)]
        model = optuna.create_study(direction=study.direction)
        model.add_trials(best + recent[::-1])
        return model


def _random(search: SearchConfig) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=search.seed)


def _cmaes(search: SearchConfig) -> BaseSampler:
    return optuna.samplers.CmaEsSampler(
        seed=search.seed,
        independent_sampler=optuna.samplers.RandomSampler(seed=search.seed),
        warn_independent_sampling=False,
    )


def _grid(search: SearchConfig) -> BaseSampler:
    return ConditionalGridSampler(grid_configs(search), seed=search.seed)


SAMPLERS: dict[str, Callable[[SearchConfig], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "cmaes": _cmaes,
    "grid": _grid,
}


def make_sampler(search: SearchConfig, seed_offset: int = 0) -> BaseSampler:
    """The Optuna sampler named by ``search.sampler``, seeded with ``search.seed`` (+ offset)."""
    if seed_offset and search.seed is not None:
        search = search.model_copy(update={"seed": search.seed + seed_offset})
    return SAMPLERS[search.sampler](search)


# ---------------------------------------------------------------------------------------------
# define-by-run


def _same(a: Any, b: Any) -> bool:
    """Equal, but ``true`` is not ``1`` (YAML keeps booleans and numbers apart, so do we)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def condition_holds(when: Mapping[str, Any] | None, chosen: Mapping[str, Any]) -> bool:
    """Every parent in ``when`` was suggested and has the wanted value (a list: any of them)."""
    for parent, wanted in (when or {}).items():
        if parent not in chosen:
            return False
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if not any(_same(chosen[parent], value) for value in allowed):
            return False
    return True


class DefineByRun:
    """Suggests every entry whose ``when:`` holds, parents first.

    A class rather than a closure so it pickles: Ray saves the searcher, this function
    included, with the experiment's state.
    """

    def __init__(self, search: SearchConfig):
        self.space = dict(search.space)
        self.order = condition_order(search.space)

    def __call__(self, trial: optuna.Trial) -> None:
        chosen: dict[str, Any] = {}
        for name in self.order:
            param = self.space[name]
            if not condition_holds(param.when, chosen):
                continue
            if isinstance(param, FloatParam):
                chosen[name] = trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
            elif isinstance(param, IntParam):
                chosen[name] = trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
            else:
                chosen[name] = trial.suggest_categorical(name, list(param.choices))
        return None


def define_by_run(search: SearchConfig) -> DefineByRun:
    """The function OptunaSearch calls per trial to suggest the (conditional) parameters."""
    return DefineByRun(search)


def make_searcher(
    search: SearchConfig,
    metric: str,
    mode: str,
    points_to_evaluate: list[dict] | None = None,
    history: list[optuna.trial.FrozenTrial] | None = None,
) -> Any:
    """Ray Tune's ``OptunaSearch`` over the space (in a ``ConcurrencyLimiter`` with max_concurrent).

    The seed lives in the sampler only: OptunaSearch ignores (and warns about) ``seed=`` when a
    sampler is given. ``history`` (finished trials of a resumed or warm-started sweep) is put in
    the study before the first suggestion, through a pre-filled Optuna storage (Ray's
    ``add_evaluated_point`` refuses define-by-run spaces); the sampler's seed is offset by its
    length so a resumed sweep does not replay the suggestions it already made.
    """
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    storage, study_name = _seeded_storage(search, mode, history) if history else (None, None)
    searcher = OptunaSearch(
        space=define_by_run(search),
        metric=metric,
        mode=mode,
        sampler=make_sampler(search, seed_offset=len(history or ())),
        points_to_evaluate=points_to_evaluate,
        storage=storage,
        study_name=study_name,
    )
    if search.max_concurrent:
        return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
    return searcher


# ---------------------------------------------------------------------------------------------
# grid


# The grid's configurations are listed (and shuffled) in the driver: past this many, a grid is
# refused with one line rather than exhausting the driver's memory (1e6 configurations took 283 MB).
MAX_GRID = 100_000


def _grid_values(name: str, param: Any) -> Any:
    """The values one entry takes in the grid: a list, or a ``range`` (never listed when counting)."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, IntParam):
        return range(param.low, param.high + 1, param.step)
    raise ValueError(f"search.space.{name}: expected categorical or int with sampler: grid, got float")


def _is_parent(search: SearchConfig) -> set[str]:
    return {parent for param in search.space.values() for parent in (param.when or {})}


def grid_configs(search: SearchConfig) -> list[dict[str, Any]]:
    """Every distinct configuration of the grid, in ``condition_order``; inactive entries absent.

    A grid of more than :data:`MAX_GRID` configurations is refused (``InputError``) before any is listed.
    """
    check_grid_size(search)
    order = condition_order(search.space)

    def expand(index: int, chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if index == len(order):
            yield dict(chosen)
            return
        name = order[index]
        param = search.space[name]
        if not condition_holds(param.when, chosen):
            yield from expand(index + 1, chosen)
            return
        for value in _grid_values(name, param):
            chosen[name] = value
            yield from expand(index + 1, chosen)
        del chosen[name]

    return list(expand(0, {}))


def check_grid_size(search: SearchConfig) -> int:
    """The grid's size, or ``InputError`` past :data:`MAX_GRID` (say it before listing anything)."""
    from sweep.errors import InputError

    size = grid_size(search)
    if size > MAX_GRID:
        raise InputError(
            "search.space",
            f"expected a grid of at most {MAX_GRID} configurations with sampler: grid, got {size}: "
            "narrow the int ranges (step) or use sampler: random or tpe, which draw only search.trials points",
        )
    return size


def grid_size(search: SearchConfig) -> int:
    """How many distinct configurations the full grid has (conditions respected).

    Counted without listing them: only values of ``when:`` parents branch, and an entry's
    values are counted with ``len`` (an int range is never listed).
    """
    order = condition_order(search.space)
    parents = _is_parent(search)

    def count(index: int, chosen: dict[str, Any]) -> int:
        if index == len(order):
            return 1
        name = order[index]
        param = search.space[name]
        if not condition_holds(param.when, chosen):
            return count(index + 1, chosen)
        values = _grid_values(name, param)
        if name not in parents or len(values) > MAX_GRID:  # past MAX_GRID the grid is refused: no need to be exact
            return len(values) * count(index + 1, chosen)
        total = 0
        for value in values:
            chosen[name] = value
            total += count(index + 1, chosen)
        del chosen[name]
        return total

    return count(0, {})


def _key(config: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((name, type(value).__name__, repr(value)) for name, value in config.items()))


class ConditionalGridSampler(BaseSampler):
    """Runs each of a list of configurations once, in a seeded shuffled order.

    Unlike ``optuna.samplers.GridSampler`` it takes the distinct configurations of a
    conditional space (so no duplicates for inactive entries) and never calls
    ``study.stop()`` (which raises under Ray's ask-and-tell). The next configuration is the
    first in the shuffled order that no trial has taken yet, so trials asked for in parallel
    get different ones; once all are taken they repeat in order.
    """

    _ATTR = "sweep_grid_id"

    def __init__(self, configs: list[dict[str, Any]], seed: int | None = None):
        if not configs:
            raise ValueError("expected at least one grid configuration")
        self._configs = configs
        self._order = list(range(len(configs)))
        random.Random(seed).shuffle(self._order)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._index = {_key(config): i for i, config in enumerate(configs)}

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs or self._ATTR in trial.system_attrs:
            return  # an enqueued point (points_to_evaluate) or a retried trial
        taken: set[Any] = set()
        for other in study.get_trials(deepcopy=False):
            if self._ATTR in other.system_attrs:
                taken.add(other.system_attrs[self._ATTR])
            elif isinstance(other.system_attrs.get("fixed_params"), dict):  # an enqueued point
                taken.add(self._index.get(_key(other.system_attrs["fixed_params"])))
        fresh = [i for i in self._order if i not in taken]
        grid_id = fresh[0] if fresh else self._order[trial.number % len(self._order)]
        study._storage.set_trial_system_attr(trial._trial_id, self._ATTR, grid_id)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        grid_id = trial.system_attrs.get(self._ATTR)
        config = self._configs[grid_id] if grid_id is not None else {}
        if param_name in config:
            return config[param_name]
        # a partial enqueued point: fill in the rest at random
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any
    ) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# trial configs


def hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters in a Tune trial config (no ``None`` values, no ``_private`` keys)."""
    return {k: v for k, v in config.items() if v is not None and not str(k).startswith("_")}


# ---------------------------------------------------------------------------------------------
# finished trials from elsewhere (MLflow): typed params, Optuna trials, a pre-filled study


def distribution(param: Any) -> Any:
    """The Optuna distribution of one space entry."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, FloatParam):
        return FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        return IntDistribution(param.low, param.high, log=param.log, step=param.step)
    return CategoricalDistribution(param.choices)


def typed_params(search: SearchConfig, raw: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """MLflow's string params back to the space's types; also the names that did not fit it."""
    typed: dict[str, Any] = {}
    dropped: list[str] = []
    for name, text in raw.items():
        param = search.space.get(name)
        value = _parse(param, text) if param is not None else None
        if value is None or not distribution(param)._contains(distribution(param).to_internal_repr(value)):
            dropped.append(name)
        else:
            typed[name] = value
    return typed, dropped


def _parse(param: Any, text: str) -> Any:
    try:
        if isinstance(param, FloatParam):
            return float(text)
        if isinstance(param, IntParam):
            return int(float(text))
    except ValueError:
        return None
    return next((choice for choice in param.choices if str(choice) == text), None)


def frozen_trial(search: SearchConfig, params: dict[str, Any], value: float | None, failed: bool = False) -> Any:
    """An Optuna trial record for a trial that already ran (COMPLETE with its value, or FAIL)."""
    from optuna.trial import TrialState, create_trial

    distributions = {name: distribution(search.space[name]) for name in params}
    if failed or value is None or value != value:
        return create_trial(state=TrialState.FAIL, params=params, distributions=distributions)
    return create_trial(state=TrialState.COMPLETE, value=value, params=params, distributions=distributions)


def _seeded_storage(search: SearchConfig, mode: str, history: list[Any]) -> tuple[Any, str]:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="sweep", direction=Objective("", mode).direction)
    study.add_trials(history)
    return storage, "sweep"
