"""sweep.inputs.dataset: DataInfo and Dataset, as the data sources and pipelines make them."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.inputs.dataset import DataInfo, Dataset, data_info
from sweep.inputs.targets import TargetKind


def test_info_is_frozen():
    info = DataInfo(input_shape=(4,), num_outputs=3, task="classification", n_train=8, n_val=2, source="t", fingerprint="0")
    with pytest.raises(Exception):
        info.task = "regression"  # type: ignore[misc]
    assert info.target_layout == "sparse" and info.num_inputs == 1 and info.num_heads == 1


def test_data_info_keeps_the_form_of_x_and_y():
    x = {"image": np.zeros((5, 8, 8)), "text": np.zeros((5, 6))}
    kinds = {"kind": TargetKind("classification", 3, "sparse", "integer labels 0..2"), "size": TargetKind("regression", 1, "values", "floats")}
    info = data_info(x, kinds, "m:f", "abc", 5, 2, streamed="tf.data")
    assert info.input_shape == (8, 8) and info.input_shapes == {"image": (8, 8), "text": (6,)}
    assert info.output_sizes == {"kind": 3, "size": 1} and info.num_heads == 2 and info.num_inputs == 2
    assert info.streamed and info.inferred.endswith("; tf.data pipeline")
    assert "kind: classification, 3 classes" in info.summary() and "streamed on workers" in info.summary()


def test_validation_data_carries_weights_only_when_given():
    info = DataInfo(input_shape=(2,), num_outputs=1, task="regression", n_train=3, n_val=2, source="t", fingerprint="0")
    x, y = np.zeros((2, 2)), np.zeros(2)
    assert len(Dataset(None, None, x, y, info).validation_data()) == 2
    assert len(Dataset(None, None, x, y, info, val_sample_weight=np.ones(2)).validation_data()) == 3
    assert Dataset(None, None, x, y, info).example(1).shape == (1, 2)
