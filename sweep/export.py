"""The path users' scripts import the best-model helpers from since before the package was laid
out by process (``sweep.export.custom_objects(uri)`` was documented): kept so those scripts keep
working. Their home is :mod:`sweep.tracking.export`; new code can use ``sweep.custom_objects`` and
``sweep.load_best``."""

from sweep.tracking.export import custom_objects, export_best, load_best

__all__ = ["custom_objects", "export_best", "load_best"]
