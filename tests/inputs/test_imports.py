"""User modules resolve next to the sweep file, even when a same-named module was loaded before."""

from __future__ import annotations

from pathlib import Path

from sweep.inputs.imports import resolve


def _module(folder: Path, value: str) -> Path:
    folder.mkdir()
    (folder / "sweep_user_mod.py").write_text(f"def build(hp, info):\n    return {value!r}\n")
    return folder


def test_a_second_sweep_gets_its_own_same_named_module(tmp_path):
    first = _module(tmp_path / "first", "first")
    second = _module(tmp_path / "second", "second")
    assert resolve("sweep_user_mod:build", "model.builder", (first,))(None, None) == "first"
    assert resolve("sweep_user_mod:build", "model.builder", (second,))(None, None) == "second"
    assert resolve("sweep_user_mod:build", "model.builder", (second,))(None, None) == "second"
