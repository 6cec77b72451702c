"""Fracture-risk outcome models: fit, validate, gate, register, score, model cards.

Public API (imported lazily, so ``osteolake models fit`` does not load torch):

- :func:`fit_and_validate` (``tasks.models.suite``) -> :class:`ModelRun`
- :class:`ModelConfig` and its enums (``tasks.models.config``)
- :func:`fit_table` (``tasks.models.table``): bring-your-own-table Cox/logistic fit
- :func:`deep_risk_score` (``tasks.models.deep``): the deep model as an extractor (image -> score)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fit_and_validate": "tasks.models.suite",
    "ModelRun": "tasks.models.suite",
    "ModelConfig": "tasks.models.config",
    "GateConfig": "tasks.models.config",
    "DeepConfig": "tasks.models.config",
    "ModelName": "tasks.models.config",
    "Outcome": "tasks.models.config",
    "SplitKind": "tasks.models.config",
    "fit_table": "tasks.models.table",
    "deep_risk_score": "tasks.models.deep",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tasks.models' has no attribute {name!r}")
