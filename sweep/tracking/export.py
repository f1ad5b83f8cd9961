"""The best model of a sweep, ready to use: ``sweep.load_best(NAME)`` and ``sweep export NAME DIR``.

The model comes from MLflow (the parent run's ``best_checkpoint/model.keras`` artifact), so it
works wherever the tracking store is reachable, not only on the machine that ran the sweep;
a local checkpoint path recorded by the sweep is the fallback. Loading uses the sweep's own
settings, recorded on its parent run (``sweep/config.json``): Keras ``safe_mode`` on unless the
sweep file said ``model.safe_mode: false``, ``model.custom_objects``, and the user's own classes
and functions the model names, imported by name from the sweep file's folder or from the copy
of those modules logged with the sweep (``sweep/code/``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sweep.tracking import store
from sweep.tracking.client import client, resolve_uri
from sweep.tracking.tags import DATA_PREPARED_TAG, FILE_TAG
from sweep.worker.checkpoints import MODEL_FILE

log = logging.getLogger("sweep.export")

BEST_ARTIFACT = f"best_checkpoint/{MODEL_FILE}"


@contextlib.contextmanager
def _no_progress_bar() -> Any:
    """MLflow draws a download progress bar on the terminal; a sweep's output has no room for it."""
    saved = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved


def _fetch_best_file(name: str, uri: str, folder: Path) -> Path:
    """Download the best model file of sweep ``name`` into ``folder`` (or find its checkpoint)."""
    parent = store.find_parent_run(uri, name)
    if parent is None:
        raise LookupError(f"no sweep named {name!r} in {uri}")
    mlflow_client = client(uri)
    try:
        with _no_progress_bar():
            return Path(mlflow_client.download_artifacts(parent.info.run_id, BEST_ARTIFACT, str(folder)))
    except Exception:  # not logged (sweep still running or no checkpoint): fall back below
        pass
    summary = store.best_summary(uri, name) or {}
    checkpoint = summary.get("checkpoint")
    if checkpoint and (Path(checkpoint) / MODEL_FILE).is_file():
        prepared = parent.data.tags.get(DATA_PREPARED_TAG)
        if prepared:  # the trial's own checkpoint, not the logged model that takes raw inputs
            log.warning("sweep %r has not logged its best model yet: this trial checkpoint takes prepared inputs (%s)", name, prepared.split(" (")[0])
        return Path(checkpoint) / MODEL_FILE
    raise LookupError(f"sweep {name!r} in {uri} has no best model yet (no trial finished with a checkpoint)")


def load_best(
    name: str, tracking_uri: str | None = None, safe_mode: bool | None = None, custom_objects: dict[str, Any] | None = None
) -> Any:
    """The best trial's ``keras.Model`` of the newest sweep called ``name``.

    Loaded as the sweep loads its checkpoints (see the module docstring); ``safe_mode`` and
    ``custom_objects`` (name -> class or function) override or add to the sweep's settings.
    """
    from sweep.worker.checkpoints import load_model_file

    uri = resolve_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="sweep-best-") as folder:
        path = _fetch_best_file(name, uri, Path(folder))
        model_cfg, search_paths = load_settings(name, uri)
        return load_model_file(path, model_cfg, search_paths, custom_objects, safe_mode)


def load_settings(name: str, uri: str) -> tuple[Any, tuple[Path, ...]]:
    """How sweep ``name`` loads its models: its ``model`` settings (from ``sweep/config.json``)
    and where the user's modules are (the sweep file's folder, the logged copy, the working
    directory). Missing pieces fall back to the defaults (safe_mode on, no custom objects)."""
    import json

    from sweep.spec.config import ModelConfig

    parent = store.find_parent_run(uri, name)
    if parent is None:
        return None, (Path.cwd(),)
    mlflow_client = client(uri)
    run_id = parent.info.run_id
    model_cfg = None
    with contextlib.suppress(Exception), tempfile.TemporaryDirectory(prefix="sweep-config-") as folder, _no_progress_bar():
        raw = json.loads(Path(mlflow_client.download_artifacts(run_id, "sweep/config.json", folder)).read_text())
        model_cfg = ModelConfig.model_validate(raw.get("model") or {})
    paths: list[Path] = []
    source = parent.data.tags.get(FILE_TAG)
    if source and Path(source).parent.is_dir():
        paths.append(Path(source).parent)
    code = Path(tempfile.gettempdir()) / f"sweep-code-{run_id}"
    with contextlib.suppress(Exception), _no_progress_bar():
        if not code.is_dir():
            code.mkdir(parents=True)
            mlflow_client.download_artifacts(run_id, "sweep/code", str(code))
    if (code / "code").is_dir():
        paths.append(code / "code")
    paths.append(Path.cwd())
    return model_cfg, tuple(paths)


def custom_objects(model_uri: str) -> dict[str, Any]:
    """The custom objects a model logged by a sweep needs, for
    ``mlflow.keras.load_model(uri, custom_objects=sweep.tracking.export.custom_objects(uri))`` in a
    process that has not imported the user's modules (MLflow's Keras flavor cannot run code to
    find them). The user's module files travel with the logged model (``code/``)."""
    import mlflow

    from sweep.worker.checkpoints import custom_objects_in

    with _no_progress_bar():
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    files = sorted(local.rglob(MODEL_FILE)) + sorted(local.rglob("*.keras"))
    paths = tuple(p for p in (local / "code", Path.cwd()) if p.is_dir())
    return custom_objects_in(files[0], paths) if files else {}


def export_best(name: str, directory: str | Path, tracking_uri: str | None = None, saved_model: bool = False) -> list[Path]:
    """Write ``DIR/model.keras`` (and ``DIR/saved_model`` with ``saved_model``); return what was written."""
    uri = resolve_uri(tracking_uri)
    out = Path(directory)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="sweep-export-") as folder:
        source = _fetch_best_file(name, uri, Path(folder))  # before the folder: a refusal leaves nothing behind
        out.mkdir(parents=True, exist_ok=True)
        target = out / MODEL_FILE
        shutil.copyfile(source, target)
        written.append(target)
    if saved_model:
        from sweep.worker.checkpoints import load_model_file

        model_cfg, search_paths = load_settings(name, uri)
        model = load_model_file(target, model_cfg, search_paths)
        target_dir = out / "saved_model"
        if target_dir.exists():
            shutil.rmtree(target_dir)
        _call_once(model)
        model.export(str(target_dir), format="tf_saved_model", verbose=False)
        written.append(target_dir)
    return written


def _call_once(model: Any) -> None:
    """A loaded subclassed model is built but was never called, which SavedModel export needs:
    call it once on zeros of the input shape it was built with."""
    if not getattr(model, "_called", True):
        import numpy as np

        shape = (model.get_build_config() or {}).get("input_shape")
        if isinstance(shape, (list, tuple)) and shape and all(isinstance(d, int) or d is None for d in shape):
            model(np.zeros([1 if d is None else d for d in shape], dtype="float32"))


def model_requirements() -> list[str]:
    """The logged model's pip requirements, stated rather than inferred.

    Without them MLflow infers requirements by re-importing the model in a subprocess, about
    5 s per save on 2 cores (measured with benchmarks/peers.py --profile), twice per sweep.
    """
    import keras
    import mlflow
    import tensorflow as tf

    return [f"mlflow=={mlflow.__version__}", f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"]


def keras_signature(model: Any, input_example: Any) -> tuple[Any, Any]:
    """The MLflow signature and input example of a Keras model, in a form MLflow's Keras flavor
    takes: a list of inputs (``keras.Model([a, b], ...)``) becomes a dict by the inputs' names,
    which the model also predicts from (MLflow infers an Array schema for a list, and its Keras
    flavor then refuses to log the model at all). ``(None, None)`` when no TensorSpec signature
    can be made: the model is then logged without one rather than not logged."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import TensorSpec

    if input_example is None:
        return None, None
    names = [tensor.name for tensor in getattr(model, "inputs", None) or []]
    if isinstance(input_example, (list, tuple)) and len(input_example) == len(names) and len(set(names)) == len(names):
        input_example = dict(zip(names, input_example))
    try:
        signature = infer_signature(input_example, _predict_eagerly(model, input_example))
    except Exception as exc:
        log.warning("the best model is logged without a signature (%s: %s)", type(exc).__name__, exc)
        return None, None
    if not all(isinstance(spec, TensorSpec) for spec in signature.inputs.inputs):
        log.warning("the best model is logged without a signature (its inputs are not tensors MLflow's Keras flavor takes)")
        return None, None
    return signature, input_example


def _predict_eagerly(model: Any, inputs: Any) -> Any:
    """``model.predict(inputs)`` for a few rows, as numpy in the outputs' structure, by calling
    the model: ``predict`` first traces a tf.function, 0.62 s of the 1.4 s from the last trial
    to the sweep's summary on 2 cores (the call: 0.03 s). ``predict`` where the call fails."""
    import keras

    try:
        return keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs, training=False))
    except Exception:
        return model.predict(inputs, verbose=0)


def attach_input_example(model_info: Any, model: Any, signature: Any, input_example: Any) -> None:
    """Give an already logged Keras model its input example (files and ``MLmodel`` entry).

    MLflow 3's Keras flavor writes the example before it creates the model folder, so
    ``log_model(input_example=...)`` fails with FileNotFoundError. Saving into a folder that
    already exists works; the example files it writes are then added to the logged model, and
    its ``MLmodel`` gains ``saved_input_example_info``, keeping the model id and registry version.
    """
    try:
        with _no_progress_bar():
            _attach_input_example(model_info, model, signature, input_example)
    except Exception as exc:  # the model is logged and registered; only its example is missing
        log.warning("the best model was logged without its input example (%s: %s)", type(exc).__name__, exc)


def _attach_input_example(model_info: Any, model: Any, signature: Any, input_example: Any) -> None:
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="sweep-example-") as folder:
        saved = Path(folder) / "saved"
        saved.mkdir()
        mlflow.keras.save_model(model, str(saved), signature=signature, input_example=input_example, pip_requirements=model_requirements())
        example_info = Model.load(str(saved)).saved_input_example_info
        upload = Path(folder) / "upload"
        upload.mkdir()
        for key in ("artifact_path", "serving_input_path"):
            name = (example_info or {}).get(key)
            if name and (saved / name).is_file():
                shutil.copyfile(saved / name, upload / name)
        location = mlflow.get_logged_model(model_info.model_id).artifact_location
        logged = Model.load(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=str(Path(folder) / "dl")))
        logged.saved_input_example_info = example_info
        logged.save(str(upload / "MLmodel"))
        mlflow.MlflowClient().log_model_artifacts(model_info.model_id, str(upload))


def register(
    model_info: Any,
    name: str,
    raise_errors: bool = False,
    *,
    run_id: str | None = None,
    description: str | None = None,
    tags: dict[str, Any] | None = None,
    alias: str | None = None,
) -> Any | None:
    """Register a logged model as a new version of ``name`` in the MLflow Model Registry.

    Separate from ``log_model`` so that a tracking store without a registry (or without the
    permission to write to it) costs the registration only, never the sweep: a warning, or with
    ``raise_errors`` the error, which the end of a sweep reports in one line (exit code 1).

    ``run_id`` is the version's lineage (the best trial's run; default the run that logged the
    model), ``description`` and ``tags`` go on the version, and ``alias`` (``champion``) is moved
    to it. Through ``MlflowClient``, so MLflow's "Successfully registered model" lines are not
    printed to the user's terminal.
    """
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow_client = mlflow.MlflowClient()
    try:
        try:
            mlflow_client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        version = mlflow_client.create_model_version(
            name,
            source=model_info.model_uri,
            run_id=run_id or getattr(model_info, "run_id", None),
            tags={k: str(v) for k, v in (tags or {}).items()} or None,
            description=description,
            model_id=getattr(model_info, "model_id", None),
        )
        if alias:
            mlflow_client.set_registered_model_alias(name, alias, version.version)
        if getattr(model_info, "model_id", None):  # the logged model names its registered versions, as mlflow.register_model does
            with contextlib.suppress(Exception):
                mlflow_client.set_logged_model_tags(
                    model_info.model_id, {"mlflow.modelVersions": json.dumps([{"name": name, "version": version.version}])}
                )
        return version
    except Exception as exc:  # the model stays logged on the parent run
        if raise_errors:
            raise
        log.warning("the best model was not registered as %r (%s: %s)", name, type(exc).__name__, str(exc).splitlines()[0][:300])
        return None
