"""The user's code and data: resolving ``package.module:name``, data sources and pipelines, model builders."""
