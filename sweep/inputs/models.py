"""Models: the built-in builders, user factories, optimizers and compiling.

A *builder* is any callable ``builder(hp, info) -> keras.Model``: ``hp`` is the trial's sampled
hyperparameters (a plain dict) and ``info`` the :class:`~sweep.inputs.dataset.DataInfo` of the arrays.
:func:`resolve_builder` turns ``model.builder`` of the sweep file into one:

* ``mlp`` / ``cnn``: the built-ins in :data:`BUILDERS`, with ``model.args`` bound as keyword
  arguments. Inside a built-in, **a key of hp beats the same key of model.args**, so a sweep can
  search e.g. ``dropout`` while ``model.args`` fixes the rest.
* ``package.module:function``: a user factory called as ``function(hp, info, **model.args)``.
  ``model.args`` are only passed when the factory accepts them (named keyword parameters or
  ``**kwargs``); an argument it does not accept is an error naming ``model.args``, never
  silently dropped. With no ``model.args`` the factory is called as ``function(hp, info)``.

The result is a :func:`functools.partial` (picklable with cloudpickle, so it ships to Ray
workers) that carries a ``spec`` attribute (``"mlp"`` or ``"pkg.mod:fn"``) used in messages.

:func:`build` calls the builder and compiles the model unless the factory already compiled it:
optimizer from :func:`make_optimizer`, loss ``model.loss`` or by task, metrics ``model.metrics``
or by task. Nothing here depends on Keras' global layer-name counters.
"""

from __future__ import annotations

import functools
import inspect
import weakref
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import keras

from sweep.spec.config import ModelConfig
from sweep.errors import InputError, raised_at, telling_line
from sweep.inputs.imports import is_spec, resolve

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sweep.inputs.dataset import DataInfo

Builder = Callable[[dict, "DataInfo"], keras.Model]


# ---------------------------------------------------------------------------------------------
# built-in builders


def _as_list(value: Any, count: int, key: str) -> list[int]:
    """``64`` -> ``[64] * count``; ``[64, 32]`` -> ``[64, 32]``."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [int(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value)] * count
    raise InputError(key, f"expected an integer or a list of integers, got {value!r}")


def _key(hp: dict, name: str) -> str:
    """Where a value came from, for messages: the space (hp) or model.args."""
    return f"search.space.{name}" if hp.get(name) is not None else f"model.args.{name}"


def _pick(hp: dict, name: str, default: Any) -> Any:
    """hp beats the builder's (model.args) value."""
    value = hp.get(name)
    return default if value is None else value


# The output activation that goes with each target layout's default loss (sweep.inputs.targets.LOSSES).
ACTIVATIONS = {"sparse": "softmax", "onehot": "softmax", "multilabel": "sigmoid", "values": None}


def _output(x: Any, info: "DataInfo") -> Any:
    """The output layer for the targets: one sigmoid unit for two classes given as labels
    (binary cross-entropy, Keras' binary convention, so AUC, Precision or F1Score work on the
    labels as given), softmax over the classes, sigmoid per label for 0/1 rows, linear values."""
    if is_binary(info):
        return keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.layers.Dense(int(info.num_outputs), activation=ACTIVATIONS.get(info.target_layout))(x)


def is_binary(info: "DataInfo") -> bool:
    """Two classes given as one label per row (0/1 or booleans)."""
    return info.task == "classification" and int(info.num_outputs) == 2 and info.target_layout == "sparse"


def _one_input_one_output(info: "DataInfo", name: str) -> None:
    """The built-in builders make single-input, single-output models."""
    inputs, heads = getattr(info, "num_inputs", 1), getattr(info, "num_heads", 1)
    if inputs == 1 and heads == 1:
        return
    what = f"{inputs} inputs" if inputs > 1 else f"{heads} outputs"
    raise InputError(
        "model.builder",
        f"expected one input array and one target array for the built-in {name}, got {what}: "
        "write a model factory for several inputs or outputs (model.builder: package.module:function)",
    )


def mlp(
    hp: dict,
    info: "DataInfo",
    units: int | list[int] | tuple[int, ...] = (128, 128),
    dropout: float = 0.0,
    activation: str = "relu",
    layers: int | None = None,
) -> keras.Model:
    """A multilayer perceptron: Flatten (if needed), Dense stack, Dense output.

    ``units``: the hidden layer widths (a list), or one width for every hidden layer (an int).
    ``layers``: number of hidden layers; repeats the first width (``layers: 0`` gives a linear /
    logistic model). Without ``layers``, an int ``units`` keeps the depth of ``model.args``'s units
    (two layers by default). ``dropout`` follows each hidden layer when > 0. Each of ``units``,
    ``layers``, ``dropout`` and ``activation`` can be searched: the hp value wins over model.args.
    Output: softmax over ``info.num_outputs`` classes, or linear for regression.
    """
    base_units = _as_list(units, 1, "model.args.units")
    units_value = _pick(hp, "units", units)
    depth = _pick(hp, "layers", layers)
    if depth is None:
        widths = _as_list(units_value, len(base_units), _key(hp, "units"))
    else:
        first = _as_list(units_value, 1, _key(hp, "units"))[:1] or [128]
        widths = first * max(int(depth), 0)
    rate = float(_pick(hp, "dropout", dropout))
    act = _pick(hp, "activation", activation)
    _one_input_one_output(info, "mlp")

    inputs = keras.Input(shape=tuple(info.input_shape))
    x = inputs if len(info.input_shape) == 1 else keras.layers.Flatten()(inputs)
    for width in widths:
        x = keras.layers.Dense(width, activation=act)(x)
        if rate > 0:
            x = keras.layers.Dropout(rate)(x)
    return keras.Model(inputs, _output(x, info))


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (H, W, C) a ``cnn`` sees for ``input_shape`` (square 1-D lengths become (s, s, 1))."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        return (shape[0], shape[1], 1)
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side == shape[0] and side >= 2:
            return (side, side, 1)
    raise InputError(
        "model.builder",
        f"expected cnn inputs of shape (H, W, C), (H, W) or a square length such as 64 "
        f"(use data.reshape otherwise), got {shape}",
    )


def cnn(
    hp: dict,
    info: "DataInfo",
    filters: int | list[int] | tuple[int, ...] = (16, 32),
    kernel_size: int = 3,
    dense: int = 64,
    dropout: float = 0.0,
    activation: str = "relu",
) -> keras.Model:
    """A small convolutional network for image-shaped inputs.

    Inputs of shape (H, W, C) are used as they are; (H, W) gets a channel axis, and a 1-D input
    whose length is a square (digits: 64 -> 8x8x1) is reshaped inside the model, so no
    ``data.reshape`` is needed. Each entry of ``filters`` is a Conv2D (padding same) followed by
    a 2x2 MaxPool while the feature map stays at least 2x2; then GlobalAveragePooling, a Dense
    layer of ``dense`` units (none when 0), Dropout when > 0, and the output layer as in ``mlp``.
    ``filters`` (list, or an int repeated for every conv layer), ``kernel_size``, ``dense``,
    ``dropout`` and ``activation`` can be searched: the hp value wins over model.args.
    """
    _one_input_one_output(info, "cnn")
    image = image_shape(info.input_shape)
    base = _as_list(filters, 1, "model.args.filters")
    conv_filters = _as_list(_pick(hp, "filters", filters), len(base), _key(hp, "filters"))
    kernel = int(_pick(hp, "kernel_size", kernel_size))
    dense_units = int(_pick(hp, "dense", dense))
    rate = float(_pick(hp, "dropout", dropout))
    act = _pick(hp, "activation", activation)

    inputs = keras.Input(shape=tuple(info.input_shape))
    x = inputs if tuple(info.input_shape) == image else keras.layers.Reshape(image)(inputs)
    height, width = image[0], image[1]
    for count in conv_filters:
        x = keras.layers.Conv2D(count, kernel, padding="same", activation=act)(x)
        if height >= 4 and width >= 4:  # pool only while the result stays at least 2x2
            x = keras.layers.MaxPooling2D(2)(x)
            height, width = height // 2, width // 2
    x = keras.layers.GlobalAveragePooling2D()(x)
    if dense_units > 0:
        x = keras.layers.Dense(dense_units, activation=act)(x)
    if rate > 0:
        x = keras.layers.Dropout(rate)(x)
    return keras.Model(inputs, _output(x, info))


BUILDERS: dict[str, Callable[..., keras.Model]] = {"mlp": mlp, "cnn": cnn}


# ---------------------------------------------------------------------------------------------
# resolving model.builder


def resolve_builder(model_cfg: ModelConfig, search_paths: tuple[Path, ...] = ()) -> Builder:
    """``model.builder`` -> a picklable ``builder(hp, info)`` with ``model.args`` bound."""
    name, args = model_cfg.builder, dict(model_cfg.args)
    if name in BUILDERS:
        fn = BUILDERS[name]
        _check_args(fn, args, f"{name}")
        builder = functools.partial(fn, **args)
    elif is_spec(name):
        fn = resolve(name, "model.builder", search_paths)
        if args:
            _check_args(fn, args, repr(name))
        _check_signature(fn, name, args)
        builder = functools.partial(fn, **args)
    else:
        raise InputError("model.builder", f"expected mlp, cnn or package.module:function, got {name!r}")
    builder.spec = name  # type: ignore[attr-defined]  # partial has a __dict__; kept by pickle
    return builder


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins / C callables have none
        return None


def _check_signature(fn: Callable[..., Any], spec: str, args: dict[str, Any]) -> None:
    """``fn(hp, info, **model.args)`` must bind: a factory's own parameters that model.args
    fills (``def build(hp, info, extra)`` with ``args: {extra: 1}``) were refused before."""
    sig = _signature(fn)
    if sig is None:
        return
    try:
        sig.bind({}, None, **args)
    except TypeError:
        given = f" and model.args ({', '.join(args)})" if args else ""
        raise InputError("model.builder", f"expected {spec!r} to accept (hp, info){given}, got a function with signature {sig}") from None


def _check_args(fn: Callable[..., Any], args: dict[str, Any], label: str) -> None:
    sig = _signature(fn)
    if sig is None or not args:
        return
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in args:
        if key not in accepted:
            choices = ", ".join(accepted) if accepted else "none"
            raise InputError(f"model.args.{key}", f"expected an argument {label} accepts ({choices}), got {key!r}")


# ---------------------------------------------------------------------------------------------
# optimizers


OPTIMIZERS: dict[str, type] = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
    "adagrad": keras.optimizers.Adagrad,
    "adamax": keras.optimizers.Adamax,
    "adadelta": keras.optimizers.Adadelta,
    "ftrl": keras.optimizers.Ftrl,
    "lion": keras.optimizers.Lion,
}

# hp keys that configure the optimizer; each is passed only to optimizers whose constructor
# names it (momentum reaches sgd/rmsprop but not adam: conditional spaces produce such keys).
OPTIMIZER_HP_KEYS: dict[str, type] = {
    "learning_rate": float,
    "momentum": float,
    "nesterov": bool,
    "weight_decay": float,
    "beta_1": float,
    "beta_2": float,
    "epsilon": float,
    "rho": float,
    "amsgrad": bool,
    "clipnorm": float,
    "clipvalue": float,
    "global_clipnorm": float,
}


def make_optimizer(hp: dict) -> keras.optimizers.Optimizer:
    """A fresh optimizer from ``hp['optimizer']`` (default adam) and the keys above that it accepts.

    Keys missing from hp keep the Keras defaults (e.g. learning_rate 0.001 for adam).
    """
    name = hp.get("optimizer") or "adam"
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise InputError("search.space.optimizer", f"expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    sig = _signature(cls)
    accepted = set(sig.parameters) if sig is not None else set()
    kwargs = {
        key: convert(hp[key])
        for key, convert in OPTIMIZER_HP_KEYS.items()
        if key in accepted and hp.get(key) is not None
    }
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# compiling


def default_loss(info: "DataInfo", model: keras.Model | None = None) -> Any:
    """The loss for each output's target layout (:data:`sweep.inputs.targets.LOSSES`), in y's form;
    binary cross-entropy for an output of two classes given as labels whose layer has one unit
    (a sigmoid, see :func:`_output`), whether it is the model's only output or one of several."""
    from sweep.inputs.structures import is_nested, named_leaves, rebuild
    from sweep.inputs.targets import LOSSES

    if not is_nested(info.target_layout):
        if is_binary(info) and (model is None or _single_output_width(model) == 1):
            return "binary_crossentropy"
        return LOSSES[info.target_layout]
    widths = dict(named_leaves(_output_widths(model), "y")) if model is not None else {}
    sizes = dict(named_leaves(info.output_sizes, "y"))
    losses = {}
    for name, layout in named_leaves(info.target_layout, "y"):
        binary = layout == "sparse" and sizes.get(name) == 2 and widths.get(name) == 1
        losses[name] = "binary_crossentropy" if binary else LOSSES[layout]
    return rebuild(info.target_layout, losses, "y")


def _output_widths(model: keras.Model) -> Any:
    """Each output's last dimension, in the form of the model's outputs (a dict, a list or one)."""
    from sweep.inputs.structures import map_leaves

    try:
        output = model.output
    except (AttributeError, ValueError):
        return {}
    return map_leaves(lambda tensor: tensor.shape[-1] if len(tensor.shape) >= 2 else 1, output)


def default_metrics(info: "DataInfo") -> Any:
    """accuracy (classification) or mae (regression) for each output, in y's form. For rows of
    0/1 (several labels per row) accuracy is per label (``BinaryAccuracy``, still logged as
    ``accuracy``): Keras' "accuracy" there is the argmax's (0.64 where 0.90 of the labels were right)."""
    from sweep.inputs.structures import map_leaves

    def for_layout(layout: str) -> list[Any]:
        if layout == "values":
            return ["mae"]
        return [keras.metrics.BinaryAccuracy(name="accuracy")] if layout == "multilabel" else ["accuracy"]

    return map_leaves(for_layout, info.target_layout)


def _spec_of(builder: Callable[..., Any]) -> str:
    spec = getattr(builder, "spec", None)
    if spec:
        return str(spec)
    fn = getattr(builder, "func", builder)
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


_COMPILED_HERE: "weakref.WeakSet[keras.Model]" = weakref.WeakSet()  # models build() compiled with the file's settings


def compiled_by_sweep(model: keras.Model) -> bool:
    """Whether :func:`build` compiled ``model`` with the sweep file's loss and metrics (not the factory)."""
    return model in _COMPILED_HERE


def is_compiled(model: keras.Model) -> bool:
    return bool(getattr(model, "compiled", False)) and getattr(model, "optimizer", None) is not None


def build(
    builder: Builder, hp: dict, info: "DataInfo", model_cfg: ModelConfig, steps_per_execution: int | None = None, search_paths: tuple[Path, ...] = ()
) -> keras.Model:
    """Call the builder and compile its model (unless it came back compiled).

    Errors a factory raises become ``InputError('model.builder', ...)`` (chained, so the
    traceback is kept). When we compile with the task's default loss, the output width is
    checked against ``info.num_outputs`` (:func:`check_model_output`). A model the factory
    compiled itself is returned untouched, its optimizer, loss and metrics included.
    ``steps_per_execution`` (train steps per compiled call, see ``worker.steps_per_execution``)
    defaults to ``hp['steps_per_execution']`` or 1. A loss or metric named
    ``package.module:function`` is the user's own function (imported from ``search_paths`` in
    the driver; a worker has the user's code on its path).
    """
    spec = _spec_of(builder)
    try:
        model = builder(hp, info)
    except InputError:
        raise
    except SystemExit as exc:  # sys.exit() or argparse in a training script reused as the factory: not the sweep's exit
        raise _exited(spec, exc) from None
    except MemoryError:
        raise  # this configuration does not fit: a trial reports it as out of memory (the search moves away)
    except Exception as exc:
        if type(exc).__name__ == "ResourceExhaustedError":  # TensorFlow's out of memory: the same
            raise
        lines = str(exc).strip().splitlines()
        said = lines[0][:300] if lines else ""
        if "Exception encountered when calling" in said:  # Keras' header, which names no cause: the sentence that does
            said = telling_line(exc, 300)
        detail = f"{type(exc).__name__}: {said}" if said and said != type(exc).__name__ else type(exc).__name__
        key = "model.args" if spec in BUILDERS and isinstance(exc, (ValueError, TypeError)) else "model.builder"  # a built-in's arguments are the file's
        raise InputError(key, f"expected {spec!r} to build a model, but it raised {detail}{raised_at(exc)}") from exc
    if not isinstance(model, keras.Model):
        raise InputError("model.builder", f"expected {spec!r} to return a keras.Model, got {type(model).__name__}")
    if is_compiled(model):
        register_user_functions(model)
        return model
    loss = hp.get("loss") or model_cfg.loss
    if loss is None:
        check_model_output(model, info)
    check_per_output_settings(model, model_cfg)
    _COMPILED_HERE.add(model)
    model.compile(
        optimizer=make_optimizer(hp),
        loss=_user_functions(loss, "model.loss", search_paths) if loss else default_loss(info, model),
        loss_weights=model_cfg.loss_weights,
        metrics=_user_functions(_metrics(model_cfg.metrics), "model.metrics", search_paths) if model_cfg.metrics else default_metrics(info),
        steps_per_execution=int(steps_per_execution or hp.get("steps_per_execution", 1) or 1),
    )
    register_user_functions(model)
    return model


# modules whose functions are no user's: Keras resolves its own by name
_LIBRARY_MODULES = ("keras", "tf_keras", "keras_hub", "keras_cv", "keras_nlp", "tensorflow", "builtins", "numpy", "sweep", "__main__")


def register_user_functions(model: keras.Model) -> list[str]:
    """Register every plain function of the user's that ``model`` uses (an activation, a
    Lambda's function, a loss or metric function) with Keras under ``module>name``, so its
    checkpoint names the module and loading finds that very function. Keras records an
    unregistered function by its bare name only: a second user module defining ``act``, or
    Keras' own ``swish``, was silently loaded in its place, and finding it imported unrelated
    scripts of the folder. Already registered, nested (``<locals>``) and lambda functions are
    left as they are. Returns the names registered now (``['my_layers>act']``)."""
    import types

    registered: list[str] = []
    for function in _functions_in(model):
        module, name = getattr(function, "__module__", None) or "", function.__name__
        if module.split(".")[0] in _LIBRARY_MODULES or "<" in function.__qualname__ or keras.saving.get_registered_name(function) != name:
            continue
        if not isinstance(function, types.FunctionType):
            continue
        keras.saving.register_keras_serializable(package=module, name=name)(function)
        registered.append(f"{module}>{name}")
    return registered


def _functions_in(root: Any) -> list[Any]:
    """The plain functions held by ``root``'s layers, losses and metrics (their attributes, and
    lists and dicts of them), each once."""
    import types

    found: dict[int, Any] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if id(value) in seen or depth > 12:
            continue
        seen.add(id(value))
        if isinstance(value, types.FunctionType):
            found.setdefault(id(value), value)
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, (keras.layers.Layer, keras.losses.Loss, keras.metrics.Metric)):
            stack.extend((item, depth + 1) for item in vars(value).values())
    return list(found.values())


def _metrics(metrics: Any) -> Any:
    """``model.metrics`` as compile takes it: a list (of names, or of lists per output), or a
    dict of lists by output name."""
    if isinstance(metrics, dict):
        return {name: [value] if isinstance(value, str) else list(value) for name, value in metrics.items()}
    return [list(value) if isinstance(value, list) else value for value in metrics]


def _user_functions(value: Any, key: str, search_paths: tuple[Path, ...]) -> Any:
    """``model.loss`` / ``model.metrics`` with every ``package.module:function`` entry replaced by
    that function of the user's (``compile(loss=focal)``, as a plain script passes it); Keras
    names stay names. Raises InputError on the entry's key when it does not import."""
    if isinstance(value, str):
        return _instance_of_class(resolve(value, key, search_paths), key, value) if is_spec(value) else value
    if isinstance(value, dict):
        return {name: _user_functions(item, f"{key}.{name}", search_paths) for name, item in value.items()}
    if isinstance(value, list):
        return [_user_functions(item, f"{key}.{index}", search_paths) for index, item in enumerate(value)]
    return value


def _exited(spec: str, exc: SystemExit, point: dict | None = None) -> InputError:
    """A factory's ``sys.exit()`` (argparse in a training script reused as the factory): a user
    error on ``model.builder``, never the sweep's own exit. ``point``: the hyperparameters it exited at."""
    at = " at " + ", ".join(f"{k}={v!r}" for k, v in point.items()) if point else ""
    return InputError("model.builder", f"expected {spec!r} to build a model{at}, but it called sys.exit({exc.code!r})")


def _instance_of_class(found: Any, key: str, spec: str) -> Any:
    """A class named as a loss or metric (``my_losses:FocalLoss``, a ``keras.losses.Loss``
    subclass) becomes an instance made with no arguments, as ``compile(loss=FocalLoss())`` is
    written; Keras would call the class itself with ``(y_true, y_pred)``, which failed in the
    model's save and was blamed on ``model.builder``. Functions and instances stay as they are.

    Raises:
        InputError: on ``key`` when the class needs constructor arguments.
    """
    if not isinstance(found, type):
        return found
    try:
        return found()
    except TypeError as exc:
        raise InputError(
            key,
            f"expected a function, an instance, or a class that takes no arguments, got the class {spec} whose constructor "
            f"needs some ({exc}): set them as defaults in its __init__, or name a module-level instance",
        ) from None


def fixed_batch_size(model: keras.Model) -> int | None:
    """The batch size a model was built for (``keras.Input(batch_size=16)``, a stateful RNN),
    or None when its inputs take any number of rows (or it has no symbolic inputs). Such a
    model must fit, validate and be evaluated in batches of exactly that many rows."""
    try:
        inputs = keras.tree.flatten(model.inputs)
    except (AttributeError, ValueError):
        return None
    sizes = {tensor.shape[0] for tensor in inputs if getattr(tensor, "shape", None)}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


def activation_bytes_per_row(model: keras.Model) -> int | None:
    """Bytes of every layer's output for one input row (nested models' layers included): an
    upper bound of what an inference batch holds per row. None when a size is unknown (a
    subclassed model's layers, a variable sequence length, a layer called more than once)."""
    total = 0

    def count(layer: Any) -> bool:
        nonlocal total
        inner = getattr(layer, "layers", None)
        if inner:  # a model: its layers (its output is its last layer's)
            return all(count(sub) for sub in inner)
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):
            return False
        for tensor in outputs:
            dims = tuple(tensor.shape[1:])
            if any(dim is None for dim in dims):
                return False
            total += math.prod(dims) * _dtype_bytes(tensor.dtype)
        return True

    return total if count(model) and total > 0 else None


def _dtype_bytes(dtype: Any) -> int:
    import numpy as np

    try:
        return np.dtype(keras.backend.standardize_dtype(dtype)).itemsize
    except TypeError:
        return 4


def output_names(model: keras.Model) -> list[str] | None:
    """The names Keras gives a functional model's outputs (its ``output_names``: the output
    layers' names, or the keys of a dict of outputs); None for one output or an unbuilt model."""
    try:
        outputs = model.outputs
        names = list(getattr(model, "output_names", None) or [])
    except Exception:  # a subclassed model before its first call has no outputs yet
        return None
    if not outputs or len(outputs) < 2 or len(names) != len(outputs):
        return None
    return names


def check_per_output_settings(model: keras.Model, model_cfg: ModelConfig) -> None:
    """``model.loss``, ``model.loss_weights`` and ``model.metrics`` given per output (a dict by
    output name, or a list with one entry per output) name outputs the model has.

    Keras finds a mistyped head only when the first batch is evaluated, with a message about
    "the path in y_pred" that the preflight would blame on ``model.builder``; said here, before
    compile, on the key that holds it. Models with one output or unknown outputs are not checked.

    Raises:
        InputError: on ``model.<setting>.<name>`` for an unknown output name, or on
            ``model.<setting>`` for a list whose length is not the number of outputs.
    """
    names = output_names(model)
    if names is None:
        return
    for setting in ("loss", "loss_weights", "metrics"):
        value = getattr(model_cfg, setting)
        if isinstance(value, dict):
            for key in value:
                if key not in names:
                    from difflib import get_close_matches

                    close = get_close_matches(str(key), names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise InputError(f"model.{setting}.{key}", f"expected the name of one of the model's outputs ({', '.join(names)}), got {key!r}{hint}")
        elif isinstance(value, list) and len(value) != len(names):
            raise InputError(
                f"model.{setting}",
                f"expected one entry per output of the model ({len(names)}: {', '.join(names)}) or a dict by output name "
                f"(e.g. {{{names[0]}: ...}}), got a list of {len(value)}",
            )


def check_model_output(model: keras.Model, info: "DataInfo") -> None:
    """The default losses need one output of width ``info.num_outputs``.

    Sparse categorical cross-entropy (classification) wants one score per class; mse
    (regression) one value per target column. Models with several outputs, or whose output
    shape is not known before fitting (unbuilt subclassed models), are not checked.
    """
    width = _single_output_width(model)
    if width is None or width == int(info.num_outputs) or (width == 1 and is_binary(info)):
        return
    shape = tuple(model.outputs[0].shape)
    if info.task == "classification":
        expected = f"a final layer with {info.num_outputs} units, one per class (softmax with sparse_categorical_crossentropy)"
        hint = " (or set model.loss to a loss that fits your output)"
    else:
        expected = f"a final layer with {info.num_outputs} unit(s), one per regression target"
        hint = " (or set model.loss)"
    raise InputError("model.builder", f"expected {expected}, got output shape {shape}{hint}")


def _single_output_width(model: keras.Model) -> int | None:
    """The last dimension of a model's one output; None for several outputs or an unknown shape."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not outputs or len(outputs) != 1:
        return None
    shape = tuple(outputs[0].shape)
    width = shape[-1] if len(shape) >= 2 else 1
    return None if width is None else int(width)


# ---------------------------------------------------------------------------------------------
# which hyperparameters mean something

# hp keys the trial itself reads, whatever the factory does: fit's batch size and epoch budget,
# and steps per execution (see sweep.worker.trainable). ``loss`` is read only when the sweep compiles.
TRIAL_HP_KEYS = ("batch_size", "epochs", "steps_per_execution")


class RecordingHP(dict):
    """A trial's hyperparameters that note every key read (``[]``, ``get``, ``in``, iteration).

    The preflight builds models with it to find space entries that nothing reads, which
    Optuna would otherwise sample, log and rank with no effect on training. Iterating or
    copying (``dict(hp)``, ``**hp``) counts as reading every key.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def _read_all(self) -> None:
        self.read.update(super().keys())

    def __iter__(self) -> Any:
        self._read_all()
        return super().__iter__()

    def keys(self) -> Any:
        self._read_all()
        return super().keys()

    def items(self) -> Any:
        self._read_all()
        return super().items()

    def values(self) -> Any:
        self._read_all()
        return super().values()

    def copy(self) -> dict:
        self._read_all()
        return dict(super().items())


def hyperparameters_read(builder: Builder, info: "DataInfo", points: list[dict], outputs: list[Any] | None = None) -> list[set[str] | Exception]:
    """The hp keys that the factory, the optimizer and the trial read at each of ``points``.

    Each point is built once (not compiled, not trained); a point whose build raises gives
    that exception (the preflight says which point). The optimizer's keys count only
    when the factory leaves compiling to the sweep and the point's optimizer accepts them
    (``momentum`` means nothing to adam). ``outputs``, when given, gets each built point's
    ``model.output_names`` (None where the build raised).
    """
    reads: list[set[str] | Exception] = []
    for point in points:
        hp = RecordingHP(point)
        if outputs is not None:
            outputs.append(None)
        try:
            model = builder(hp, info)
            if outputs is not None and isinstance(model, keras.Model):
                outputs[-1] = list(getattr(model, "output_names", None) or [])
            if isinstance(model, keras.Model) and not is_compiled(model):
                make_optimizer(hp)
                hp.get("loss")
        except SystemExit as exc:  # at one point of the space only: every trial drawing it would end that way
            raise _exited(_spec_of(builder), exc, point) from None
        except Exception as exc:
            reads.append(exc)
            continue
        finally:
            keras.backend.clear_session(free_memory=False)
        reads.append(hp.read | set(TRIAL_HP_KEYS))
    return reads


# ---------------------------------------------------------------------------------------------
# names checked against Keras' registries before any trial


def _known(kind: str, name: Any) -> bool:
    """Whether ``name`` is an optimizer of :data:`OPTIMIZERS`, or a name Keras resolves as an
    activation, loss or metric (with compile's own aliases: accuracy/acc, crossentropy/ce)."""
    if not isinstance(name, str):
        return name is None and kind in ("activation", "optimizer")  # None: linear, adam
    if kind in ("loss", "metric") and is_spec(name):
        return True  # the user's own function: imported (and checked) when the preflight compiles with it
    if kind == "optimizer":
        return name.lower() in OPTIMIZERS
    if kind == "loss" and name.lower() in ("crossentropy", "ce"):
        return True
    if kind == "metric" and name.lower() in ("accuracy", "acc", "crossentropy", "ce"):
        return True
    get = {"activation": keras.activations.get, "loss": keras.losses.get, "metric": keras.metrics.get}[kind]
    try:
        get(name)
    except (ValueError, TypeError):
        return False
    return True


def _expected_names(kind: str) -> str:
    if kind == "optimizer":
        return f"one of {', '.join(OPTIMIZERS)}"
    return {"activation": "a Keras activation name (relu, gelu, tanh, ...)",
            "loss": "a Keras loss name (mse, huber, sparse_categorical_crossentropy, ...) or package.module:function",
            "metric": "a Keras metric name (accuracy, mae, auc, ...) or package.module:function"}[kind]


def check_names(space: dict, model_cfg: ModelConfig, sweep_compiles: bool) -> None:
    """Every name that reaches Keras is one Keras knows, checked before any trial: otherwise only
    the trials that draw a mistyped choice fail, one by one, after the sweep started.

    Checked: ``model.loss`` and ``model.metrics`` (always: they only mean Keras names); the
    space's ``optimizer`` and ``loss`` choices when the sweep compiles the model; ``activation``
    (space choices and ``model.args.activation``) for the built-in builders, which pass it to
    Keras layers (a factory of your own may read these words its own way).
    """
    def check(kind: str, key: str, value: Any) -> None:
        if not _known(kind, value):
            raise InputError(key, f"expected {_expected_names(kind)}, got {value!r}")

    loss = model_cfg.loss
    for key, value in (loss.items() if isinstance(loss, dict) else enumerate(loss) if isinstance(loss, list) else [(None, loss)] if loss is not None else []):
        check("loss", "model.loss" if key is None else f"model.loss.{key}", value)
    metrics = model_cfg.metrics
    if isinstance(metrics, list):
        for index, value in enumerate(metrics):
            for inner, item in enumerate(value if isinstance(value, list) else [value]):
                check("metric", f"model.metrics.{index}.{inner}" if isinstance(value, list) else f"model.metrics.{index}", item)
    elif isinstance(metrics, dict):
        for head, value in metrics.items():
            for index, item in enumerate([value] if isinstance(value, str) else value):
                check("metric", f"model.metrics.{head}" if isinstance(value, str) else f"model.metrics.{head}.{index}", item)
    builtin = model_cfg.builder in BUILDERS
    kinds = {"optimizer": sweep_compiles, "loss": sweep_compiles, "activation": builtin}
    for name, kind in (("optimizer", "optimizer"), ("loss", "loss"), ("activation", "activation")):
        param = space.get(name)
        if not kinds[kind] or param is None or getattr(param, "type", None) != "categorical":
            continue
        for index, value in enumerate(param.choices):
            check(kind, f"search.space.{name}.choices.{index}", value)
    if builtin and "activation" in model_cfg.args:
        check("activation", "model.args.activation", model_cfg.args["activation"])


# losses that want one layout of targets, and the layout (targets.LOSSES' keys) each wants
_LOSS_LAYOUTS = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "onehot",
    "categorical_focal_crossentropy": "onehot",
}
_LAYOUT_WORDS = {"sparse": "one class index per row", "onehot": "one-hot rows", "multilabel": "0/1 rows", "values": "values"}


def check_losses_fit_targets(space: dict, model_cfg: ModelConfig, info: "DataInfo") -> None:
    """A class-index loss given one-hot targets (or the reverse) fails in Keras with a shape
    error the preflight blamed on ``model.builder``; a searched loss is one loss for every
    output, which a model whose outputs differ in task cannot take. Said on the loss's key.

    Raises:
        InputError: on ``model.loss`` (or ``model.loss.<output>``) or ``search.space.loss``.
    """
    layouts = info.target_layout
    if isinstance(layouts, (dict, list)):
        named = dict(layouts) if isinstance(layouts, dict) else dict(enumerate(layouts))
        param = space.get("loss")
        if param is not None and len(set(named.values())) > 1:
            kinds = ", ".join(f"{name}: {_LAYOUT_WORDS.get(layout, layout)}" for name, layout in named.items())
            raise InputError("search.space.loss", f"expected one loss that fits every output, got a searched loss for outputs whose targets differ ({kinds}): give model.loss per output instead")
        loss = model_cfg.loss
        pairs = loss.items() if isinstance(loss, dict) else enumerate(loss) if isinstance(loss, list) else []
        for key, name in pairs:
            _check_loss_layout(name, named.get(key), f"model.loss.{key}")
        return
    loss = model_cfg.loss
    if isinstance(loss, str):
        _check_loss_layout(loss, layouts, "model.loss")
    param = space.get("loss")
    if param is not None and getattr(param, "type", None) == "categorical":
        for index, name in enumerate(param.choices):
            _check_loss_layout(name, layouts, f"search.space.loss.choices.{index}")


def _check_loss_layout(name: Any, layout: Any, key: str) -> None:
    wanted = _LOSS_LAYOUTS.get(str(name).lower()) if isinstance(name, str) else None
    if wanted is None or layout not in ("sparse", "onehot") or wanted == layout:
        return
    from sweep.inputs.targets import LOSSES

    raise InputError(key, f"expected a loss for {_LAYOUT_WORDS[layout]} ({LOSSES[layout]}), got {name!r}, which wants {_LAYOUT_WORDS[wanted]}")


def sweep_compiles(builder: Builder, hp: dict, info: "DataInfo", model_cfg: ModelConfig) -> bool:
    """Whether the sweep compiles the model (the built-ins; a factory that returns it uncompiled)."""
    if model_cfg.builder in BUILDERS:
        return True
    try:
        return not is_compiled(builder(dict(hp), info))
    except SystemExit as exc:
        raise _exited(_spec_of(builder), exc) from None
    except Exception:
        return True  # the preflight's own build reports the error
    finally:
        keras.backend.clear_session(free_memory=False)
