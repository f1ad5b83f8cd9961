"""Where a trial runs and what it may touch there: GPUs, GPU memory, replicas, node identity.

Ray decides *where* a trial runs from its resource request (``resources:`` in the sweep file);
this module makes the trial behave on the node it got:

- A CPU-only trial (``gpus_per_trial: 0``) hides every GPU from TensorFlow. Since Ray 2.x no
  longer blanks ``CUDA_VISIBLE_DEVICES`` for zero-GPU workers, TF would otherwise grab memory on
  every card of a GPU node it happens to share.
- A trial with a fraction of a GPU gets a TF memory limit of that fraction of the card. Ray's
  fractions are bookkeeping only; without the limit the first trial's TF takes the whole card
  and its neighbours die of OOM.
- A trial with more than one GPU trains under ``tf.distribute.MirroredStrategy`` (one replica per
  visible GPU), optionally with the batch size scaled by the number of replicas.
- Every trial reports which node it ran on and with what, so MLflow can tag it.

Everything here runs inside the Ray worker, except ``identity_tags`` (driver side).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

from sweep.spec.config import ResourcesConfig
from sweep.protocol import CPUS_FIELD, CUDA_DEVICES_FIELD, GPUS_FIELD, NODE_ID_FIELD, NODE_IP_FIELD
from sweep.tracking.tags import CPUS_TAG, CUDA_VISIBLE_DEVICES_TAG, GPUS_TAG, NODE_ID_TAG, NODE_IP_TAG

# Result keys a trial adds to each report (sweep.protocol; see callbacks.TuneReporter ``extra``),
# and the MLflow tags they become on the trial's run.
IDENTITY_TAGS = {
    NODE_ID_FIELD: NODE_ID_TAG,
    NODE_IP_FIELD: NODE_IP_TAG,
    CPUS_FIELD: CPUS_TAG,
    GPUS_FIELD: GPUS_TAG,
    CUDA_DEVICES_FIELD: CUDA_VISIBLE_DEVICES_TAG,
}


# ---------------------------------------------------------------------------------------------
# GPUs (worker side, once per worker process, before TensorFlow touches a device)


def configure_gpus(resources: ResourcesConfig) -> None:
    """Hide, share or use this worker's GPUs according to ``gpus_per_trial``."""
    gpus = resources.gpus_per_trial
    if gpus <= 0:
        hide_gpus()
        return
    import tensorflow as tf

    physical = tf.config.list_physical_devices("GPU")
    if gpus < 1 and physical:
        limit = memory_limit_mb(gpus, total_memory_mb(visible_device_ids()[:1]))
        if limit:
            _set_memory_limit(tf, physical[0], limit)
            return
    for device in physical:  # whole GPUs: allocate as needed rather than all up front
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:
            pass


def hide_gpus() -> None:
    """Make TensorFlow in this process see no GPU (CPU-only trials on a GPU node)."""
    if "tensorflow" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised its devices in this process
        pass


def memory_limit_mb(fraction: float, total_mb: int | None) -> int | None:
    """``fraction`` of a card of ``total_mb`` MiB, in whole MiB (None when the size is unknown)."""
    if not total_mb or fraction <= 0 or fraction >= 1:
        return None
    return max(1, int(total_mb * fraction))


def visible_device_ids() -> list[str]:
    """The GPU ids Ray gave this worker (``CUDA_VISIBLE_DEVICES``), in order."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [part.strip() for part in text.split(",") if part.strip()]


def total_memory_mb(device_ids: list[str]) -> int | None:
    """Total memory of the first of ``device_ids`` (physical ids) in MiB, from ``nvidia-smi``."""
    smi = shutil.which("nvidia-smi")
    if not smi or not device_ids:
        return None
    command = [smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", device_ids[0]]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True).stdout
        return int(float(out.strip().splitlines()[0]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _set_memory_limit(tf: Any, device: Any, limit_mb: int) -> None:
    try:
        tf.config.set_logical_device_configuration(device, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)])
    except RuntimeError:  # devices already initialised (TF used earlier in this worker)
        pass


# ---------------------------------------------------------------------------------------------
# more than one GPU per trial


def strategy(resources: ResourcesConfig) -> Any | None:
    """``MirroredStrategy`` over the visible GPUs when a trial holds more than one, else None."""
    if resources.gpus_per_trial <= 1:
        return None
    import tensorflow as tf

    if len(tf.config.list_logical_devices("GPU")) < 2:
        return None
    return tf.distribute.MirroredStrategy()


def batch_size(base: int, resources: ResourcesConfig, replicas: int) -> int:
    """The global batch size: ``base`` per replica when ``scale_batch_size`` is on, else ``base``."""
    return base * replicas if resources.scale_batch_size and replicas > 1 else base


# ---------------------------------------------------------------------------------------------
# node identity


def trial_identity(resources: ResourcesConfig) -> dict[str, Any]:
    """Where this trial runs and with what, as extra report fields (see ``IDENTITY_TAGS``)."""
    import ray

    context = ray.get_runtime_context()
    return {
        NODE_ID_FIELD: context.get_node_id(),
        NODE_IP_FIELD: ray.util.get_node_ip_address(),
        CPUS_FIELD: float(resources.cpus_per_trial),
        GPUS_FIELD: float(resources.gpus_per_trial),
        CUDA_DEVICES_FIELD: os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def identity_tags(result: dict[str, Any]) -> dict[str, str]:
    """The MLflow tags for the identity fields present in one Tune result (driver side)."""
    return {tag: str(result[key]) for key, tag in IDENTITY_TAGS.items() if key in result}
