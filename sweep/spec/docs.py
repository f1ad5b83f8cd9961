"""The sweep-file reference, generated from the pydantic models in ``sweep.spec.config``.

One source of truth: ``python -m sweep.spec.docs > docs/reference.md`` rewrites the page
(``python -m sweep.spec.docs --schema > docs/sweep.schema.json`` the sweep file's JSON Schema, ``--write``
both), and tests fail when the committed files differ from what the models say.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sweep.spec import config as c

HEADER = """# Sweep file reference

Generated from the pydantic models in `sweep/spec/config.py` by `python -m sweep.spec.docs > docs/reference.md`;
do not edit by hand (a test keeps this page in sync). Unknown keys are errors; every mistake is
reported as one line `FILE: key.path: expected ...`.
"""

SECTIONS: list[tuple[str, type[BaseModel] | None, str]] = [
    ("top level", c.SweepConfig, ""),
    ("data", c.DataConfig, "data."),
    ("model", c.ModelConfig, "model."),
    ("fit", c.FitConfig, "fit."),
    ("objective", c.ObjectiveConfig, "objective."),
    ("search", c.SearchConfig, "search."),
    ("search.space entries: type: float", c.FloatParam, "search.space.NAME."),
    ("search.space entries: type: int", c.IntParam, "search.space.NAME."),
    ("search.space entries: type: categorical", c.CategoricalParam, "search.space.NAME."),
    ("scheduler: type: asha", c.AshaConfig, "scheduler."),
    ("scheduler: type: hyperband", c.HyperbandConfig, "scheduler."),
    ("scheduler: type: median", c.MedianConfig, "scheduler."),
    ("scheduler: type: fifo", c.FifoConfig, "scheduler."),
    ("resources", c.ResourcesConfig, "resources."),
    ("tracking", c.TrackingConfig, "tracking."),
    ("failure", c.FailureConfig, "failure."),
]


def type_text(annotation: Any) -> str:
    """A short, readable type: ``float``, ``int | null``, ``one of: tpe, random``, ``list of str``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args) if len(args) > 1 else str(args[0])
    if origin in (typing.Union, types.UnionType):
        if all(inspect.isclass(a) and issubclass(a, BaseModel) for a in args):
            return "section, chosen by `type`"
        return " \\| ".join(type_text(a) for a in args)
    if origin in (list, tuple):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}" if args else "mapping"
    if annotation is type(None):
        return "null"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_defaults=True) or "(section defaults)"
            return f"`{json.dumps(value)}`" if not isinstance(value, str) else value
        return f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{json.dumps(field.default)}`"


def constraints_text(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length"), ("pattern", "pattern")):
            value = getattr(item, name, None)
            if value is not None:
                parts.append(f"{symbol} `{value}`" if name != "pattern" else f"matches `{value}`")
    return ", ".join(parts)


def _section_doc(annotation: Any) -> str:
    """For a field that is a whole section: the first line of its docstring and where it is described."""
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        title = next((t for t, m, _ in SECTIONS if m is annotation), "")
        first = inspect.cleandoc(annotation.__doc__ or "").splitlines()[0] if annotation.__doc__ else ""
        first = first.replace("``", "`")
        return f"{first} See [{title}](#{title.replace(' ', '-')})." if title else first
    args = get_args(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType) and all(inspect.isclass(a) and issubclass(a, BaseModel) for a in args):
        return "See the `scheduler:` sections below."
    return ""


def section(title: str, model: type[BaseModel], prefix: str) -> str:
    doc = inspect.cleandoc(model.__doc__ or "").replace("``", "`")
    if doc.startswith("Base for") or not model.__doc__:
        doc = ""
    lines = [f"## {title}", ""]
    if doc:
        lines += [doc, ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or _section_doc(field.annotation)).replace("|", "\\|").replace("\n", " ")
        extra = constraints_text(field)
        if extra:
            description = f"{description} ({extra})" if description else extra
        lines.append(f"| `{prefix}{name}` | {type_text(field.annotation)} | {default_text(field)} | {description} |")
    return "\n".join(lines) + "\n"


def missing_sections() -> list[str]:
    """Sections of the sweep file (nested models) that ``SECTIONS`` forgot: they would be undocumented."""
    covered = {model for _, model, _ in SECTIONS}
    missing = []
    for name, field in c.SweepConfig.model_fields.items():
        annotation = field.annotation
        models = [a for a in (get_args(annotation) or (annotation,)) if inspect.isclass(a) and issubclass(a, BaseModel)]
        if any(model not in covered for model in models):
            missing.append(name)
    return missing


def reference() -> str:
    """The whole page, as Markdown."""
    missing = missing_sections()
    if missing:
        raise RuntimeError(f"sweep/docs.py SECTIONS lacks the section(s) {', '.join(missing)}: add them so they are documented")
    return "\n".join([HEADER] + [section(title, model, prefix) for title, model, prefix in SECTIONS if model is not None])


SCHEMA_PATH = "docs/sweep.schema.json"  # relative to the repository root


def schema() -> str:
    """The sweep file's JSON Schema (draft 2020-12), from the same pydantic models, as text.

    Editors that read YAML through yaml-language-server complete and check a sweep file whose
    first line is ``# yaml-language-server: $schema=<path or URL of docs/sweep.schema.json>``.
    """
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "sweep.schema.json",
        **c.SweepConfig.model_json_schema(mode="validation"),
        "title": "sweep file",
    }
    _type_defaults_to_asha(document)
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def _type_defaults_to_asha(document: dict) -> None:
    """``scheduler: {grace_period: 2}`` is ASHA (``SweepConfig``'s validator fills the type in),
    but pydantic's schema requires ``type`` in every scheduler, so editors flagged a valid file.
    ASHA's ``type`` becomes optional: a scheduler without one matches ASHA alone in the ``oneOf``."""
    asha = document["$defs"]["AshaConfig"]
    asha["required"] = [key for key in asha.get("required", []) if key != "type"]
    if not asha["required"]:
        del asha["required"]
    asha["properties"]["type"]["description"] = "The default: a scheduler without a type is asha."


def main(argv: list[str] | None = None) -> int:
    """``python -m sweep.spec.docs``: the reference page on stdout; ``--schema``: the JSON Schema on
    stdout; ``--write``: both into ``docs/`` (reference.md, sweep.schema.json) of the current folder."""
    from pathlib import Path

    argv = sys.argv[1:] if argv is None else argv
    if "--write" in argv:
        Path("docs").mkdir(exist_ok=True)
        Path("docs/reference.md").write_text(reference(), encoding="utf-8")
        Path(SCHEMA_PATH).write_text(schema(), encoding="utf-8")
        print(f"wrote docs/reference.md and {SCHEMA_PATH}")
    elif "--schema" in argv:
        sys.stdout.write(schema())
    else:
        sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
