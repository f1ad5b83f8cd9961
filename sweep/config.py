"""The sweep file: pydantic models, defaults, ``load(path)`` and one-line errors.

Everything a user can write in a sweep YAML file is declared here and nowhere else, so the
reference documentation, validation and defaults come from one source of truth. Validation
errors are turned into a single readable line ``FILE: KEY.PATH: what was expected`` because a
user who mistyped a key should never see a pydantic or Ray traceback.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
SAMPLERS = ("tpe", "random", "cmaes", "grid")
TASKS = ("classification", "regression")


class SweepConfigError(ValueError):
    """A user mistake in a sweep file: which file, which key, what was expected."""

    def __init__(self, file: str, key: str, expected: str):
        self.file, self.key, self.expected = file, key, expected
        super().__init__(f"{file}: {key}: {expected}" if key else f"{file}: {expected}")


class InputError(ValueError):
    """A user mistake found outside config validation (data, model factory, ...).

    Raised by modules that do not know which file the sweep came from; the runner turns it
    into a :class:`SweepConfigError` naming the file.
    """

    def __init__(self, key: str, expected: str):
        self.key, self.expected = key, expected
        super().__init__(f"{key}: {expected}")


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------------------
# search space entries


class _Param(_Strict):
    when: dict[str, Any] | None = Field(
        default=None,
        description="Only sample this entry when every named parameter has the given value "
        "(a list means any of those values), e.g. `{optimizer: sgd}`.",
    )


class FloatParam(_Param):
    """A real number between ``low`` and ``high`` (log-uniform with ``log: true``)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> "FloatParam":
        _check_low_high(self.low, self.high, self.log, self.step)
        return self


class IntParam(_Param):
    """An integer between ``low`` and ``high`` inclusive."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> "IntParam":
        _check_low_high(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self


class CategoricalParam(_Param):
    """One of a list of values (strings, numbers, booleans)."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)


def _check_low_high(low: float, high: float, log: bool, step: float | None) -> None:
    if low > high:
        raise ValueError(f"expected low <= high, got low={low} > high={high}")
    if log and low <= 0:
        raise ValueError(f"expected low > 0 with log: true, got low={low}")
    if log and step is not None:
        raise ValueError("expected either log: true or step, not both")


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class SearchConfig(_Strict):
    """What Optuna samples and how many trials run."""

    sampler: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    seed: int | None = Field(default=None, description="Makes the sequence of suggestions reproducible.")
    trials: int = Field(default=16, ge=1)
    max_concurrent: int | None = Field(
        default=None, ge=1, description="Trials running at once (default: as many as resources allow)."
    )
    space: dict[str, Param] = Field(min_length=1)

    @field_validator("space", mode="before")
    @classmethod
    def _space_is_mapping(cls, value: Any) -> Any:
        if value is None or value == {}:
            raise ValueError("expected at least one parameter, got an empty space")
        return value

    @model_validator(mode="after")
    def _check_conditions(self) -> "SearchConfig":
        for name, param in self.space.items():
            for parent, wanted in (param.when or {}).items():
                _check_condition(self.space, name, parent, wanted)
        _condition_order(self.space)  # raises on cycles
        if self.sampler == "grid":
            for name, param in self.space.items():
                if isinstance(param, FloatParam):
                    raise _KeyedError(
                        f"space.{name}.type",
                        "expected categorical or int with sampler: grid, got float",
                    )
        return self


class _KeyedError(ValueError):
    """A validator error that belongs to a deeper key than the validator's own."""

    def __init__(self, subkey: str, message: str):
        self.subkey = subkey
        super().__init__(message)


def _check_condition(space: Mapping[str, Any], name: str, parent: str, wanted: Any) -> None:
    key = f"space.{name}.when.{parent}"
    if parent == name:
        raise _KeyedError(key, "expected another parameter, got the parameter itself")
    if parent not in space:
        raise _KeyedError(key, f"expected one of the space's parameters ({', '.join(space)}), got {parent!r}")
    parent_param = space[parent]
    values = wanted if isinstance(wanted, list) else [wanted]
    if isinstance(parent_param, CategoricalParam):
        for value in values:
            if value not in parent_param.choices:
                raise _KeyedError(key, f"expected one of {parent_param.choices}, got {value!r}")


def condition_order(space: Mapping[str, Any]) -> list[str]:
    """Parameter names ordered so that every ``when:`` parent is sampled before its children."""
    return _condition_order(space)


def _condition_order(space: Mapping[str, Any]) -> list[str]:
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise _KeyedError(f"space.{name}.when", "expected conditions without a cycle")
        visiting.add(name)
        for parent in (space[name].when or {}):
            if parent in space:
                visit(parent)
        visiting.discard(name)
        ordered.append(name)

    for name in space:
        visit(name)
    return ordered


# ---------------------------------------------------------------------------------------------
# the other sections


class DataConfig(_Strict):
    """Where the arrays come from and how they are split."""

    source: str = Field(
        description="digits | diabetes | synthetic | npz:PATH | csv:PATH | keras:NAME | package.module:function"
    )
    validation_split: float = Field(default=0.2, gt=0, lt=1)
    target: str | None = Field(default=None, description="Target column of a csv: source.")
    task: Literal["classification", "regression"] | None = Field(
        default=None, description="Inferred from the targets when not given."
    )
    num_outputs: int | None = Field(default=None, ge=1, description="Inferred when not given.")
    reshape: list[int] | None = Field(
        default=None, description="Reshape each input sample, e.g. [8, 8, 1] for a CNN on digits."
    )
    normalize: bool = Field(default=True, description="Scale inputs to zero mean and unit variance (train statistics).")
    seed: int = Field(default=0, description="Seed of the train/validation split and of synthetic data.")
    samples: int = Field(default=2000, ge=10, description="synthetic: number of rows.")
    features: int = Field(default=20, ge=1, description="synthetic: number of input columns.")
    classes: int = Field(default=2, ge=2, description="synthetic classification: number of classes.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for a user function.")

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        from sweep.data import check_source  # data owns the list of sources

        check_source(value)
        return value


class ModelConfig(_Strict):
    """Which network to build and how it is compiled."""

    builder: str = Field(default="mlp", description="mlp | cnn | package.module:function")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the builder.")
    loss: str | None = Field(default=None, description="Default: by task.")
    metrics: list[str] | None = Field(default=None, description="Default: accuracy or mae, by task.")


class FitConfig(_Strict):
    """Arguments of ``model.fit()`` shared by every trial (the space may override batch_size)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1, description="Used when the space has no batch_size.")
    shuffle: bool = True
    callbacks: list[str | dict[str, dict[str, Any]]] = Field(
        default_factory=list,
        description="Keras callbacks by name, e.g. [early_stopping] or [{early_stopping: {patience: 3}}].",
    )


class ObjectiveConfig(_Strict):
    """The metric the search optimizes and ASHA ranks trials by."""

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"


class AshaConfig(_Strict):
    type: Literal["asha"]
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3, gt=1)
    max_t: int | None = Field(default=None, ge=1, description="Default: fit.epochs.")


class HyperbandConfig(_Strict):
    type: Literal["hyperband"]
    reduction_factor: float = Field(default=3, gt=1)
    max_t: int | None = Field(default=None, ge=1, description="Default: fit.epochs.")


class MedianConfig(_Strict):
    type: Literal["median"]
    grace_period: int = Field(default=1, ge=1)
    min_samples_required: int = Field(default=3, ge=1)


class FifoConfig(_Strict):
    type: Literal["fifo"]


SchedulerConfig = Annotated[
    Union[AshaConfig, HyperbandConfig, MedianConfig, FifoConfig], Field(discriminator="type")
]


class ResourcesConfig(_Strict):
    """What one trial takes from the cluster."""

    cpus_per_trial: float = Field(default=1, gt=0)
    gpus_per_trial: float = Field(default=0, ge=0)
    custom: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per trial.")


class TrackingConfig(_Strict):
    """Where MLflow records the sweep."""

    uri: str | None = Field(default=None, description="Default: sqlite:///mlflow.db in the working directory.")
    experiment: str | None = Field(default=None, description="Default: the sweep name.")


class SweepConfig(_Strict):
    """One sweep file."""

    name: str = Field(pattern=NAME_PATTERN)
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    search: SearchConfig
    scheduler: SchedulerConfig = Field(default_factory=lambda: AshaConfig(type="asha"))
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _check_scheduler_fits_epochs(self) -> "SweepConfig":
        grace = getattr(self.scheduler, "grace_period", None)
        if grace is not None and grace > self.fit.epochs:
            raise _KeyedError(
                "scheduler.grace_period",
                f"expected at most fit.epochs ({self.fit.epochs}), got {grace}",
            )
        max_t = getattr(self.scheduler, "max_t", None)
        if max_t is not None and max_t > self.fit.epochs:
            raise _KeyedError("scheduler.max_t", f"expected at most fit.epochs ({self.fit.epochs}), got {max_t}")
        return self

    @property
    def max_epochs(self) -> int:
        """The epoch budget a trial may reach (the scheduler's max_t or fit.epochs)."""
        return getattr(self.scheduler, "max_t", None) or self.fit.epochs

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name


# ---------------------------------------------------------------------------------------------
# loading

OVERRIDE_ALIASES = {
    "trials": "search.trials",
    "seed": "search.seed",
    "epochs": "fit.epochs",
    "tracking_uri": "tracking.uri",
    "experiment": "tracking.experiment",
}


def load(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read, override and validate a sweep; relative paths resolve against the file's folder.

    ``source`` is a YAML path or an already-parsed mapping (then paths resolve against the
    working directory). ``overrides`` maps dotted keys (``fit.epochs``) or the aliases in
    ``OVERRIDE_ALIASES`` to values; ``None`` values are ignored so CLI flags can pass through.
    """
    if isinstance(source, Mapping):
        label, base, raw = "<dict>", Path.cwd(), copy.deepcopy(dict(source))
    else:
        path = Path(source)
        label, base, raw = str(source), path.resolve().parent, _read_yaml(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, OVERRIDE_ALIASES.get(key, key), value)
    _resolve_paths(raw, base)
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(label, exc) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SweepConfigError(str(path), "", "expected a sweep YAML file, but no such file exists")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepConfigError(str(path), "", f"expected valid YAML, {where}{problem}") from None
    if not isinstance(raw, dict):
        raise SweepConfigError(str(path), "", f"expected a mapping of sections, got {_kind(raw)}")
    return raw


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SweepConfigError("<overrides>", dotted, f"expected {part} to be a mapping")
    node[leaf] = value


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make ``npz:``/``csv:`` data paths absolute relative to the sweep file's folder."""
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("source"), str):
        return
    kind, sep, rest = data["source"].partition(":")
    if sep and kind in ("npz", "csv") and rest:
        path = Path(rest).expanduser()
        data["source"] = f"{kind}:{path if path.is_absolute() else (base / path).resolve()}"


# ---------------------------------------------------------------------------------------------
# turning pydantic errors into one line

_TAGS = {"float", "int", "categorical", "asha", "hyperband", "median", "fifo"}
_UNION_MEMBERS = {"str", "int", "float", "bool", "none", "dict[str,dict[str,any]]", "list[str]"}


def _first_error(label: str, exc: ValidationError) -> SweepConfigError:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedError):
        loc = [p for p in loc if p != "__root__"] + ctx_error.subkey.split(".")
        loc = _dedupe_prefix(loc, ctx_error.subkey)
    key = ".".join(_clean_loc(loc))
    return SweepConfigError(label, key, _expected(error, key))


def _dedupe_prefix(loc: list[str], subkey: str) -> list[str]:
    """A model validator's loc already names its section; the subkey restates part of it."""
    sub = subkey.split(".")
    head = loc[: len(loc) - len(sub)]
    if head and sub and head[-1] == sub[0]:
        head = head[:-1]
    return head + sub


def _clean_loc(loc: list[str]) -> list[str]:
    cleaned = []
    for i, part in enumerate(loc):
        parent = loc[i - 1] if i else ""
        if part in _TAGS and parent not in ("space",) and i and (loc[i - 2] == "space" or parent == "scheduler"):
            continue  # the discriminator tag pydantic inserts for tagged unions
        if part.lower().replace(" ", "") in _UNION_MEMBERS or part.startswith(("list[", "dict[", "function-")):
            continue
        cleaned.append(part)
    return cleaned


def _expected(error: dict[str, Any], key: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    got = f", got {_show(value)}"
    simple = {
        "missing": "required key is missing",
        "float_parsing": f"expected a number{got}",
        "float_type": f"expected a number{got}",
        "int_parsing": f"expected an integer{got}",
        "int_type": f"expected an integer{got}",
        "int_from_float": f"expected an integer{got}",
        "bool_parsing": f"expected true or false{got}",
        "bool_type": f"expected true or false{got}",
        "string_type": f"expected a string{got}",
        "dict_type": f"expected a mapping{got}",
        "model_type": f"expected a mapping{got}",
        "list_type": f"expected a list{got}",
        "too_short": f"expected at least {ctx.get('min_length', 1)} item(s){got}",
        "string_pattern_mismatch": f"expected letters, digits, '.', '_' or '-' (starting with a letter or digit){got}",
    }
    if kind in simple:
        return simple[kind]
    if kind == "extra_forbidden":
        return "unknown key" + _allowed_keys_hint(key)
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '').replace(' or ', ', ')}{got}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = ctx.get("expected_tags", "")
        return f"expected type to be one of {tags}" + (f", got {_show(ctx.get('tag'))}" if ctx.get("tag") else "")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le")), "")
        return f"expected a value {sign} {bound}{got}"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return message
    return f"{error['msg'][0].lower()}{error['msg'][1:]}{got}"


def _allowed_keys_hint(key: str) -> str:
    parts = key.split(".")
    model: Any = SweepConfig
    for part in parts[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    names = list(getattr(model, "model_fields", {}))
    return f" (expected one of: {', '.join(names)})" if names else ""


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    text = re.sub(r"\n\.\.\.$", "", text)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return "an empty file" if value is None else f"a {type(value).__name__}"
