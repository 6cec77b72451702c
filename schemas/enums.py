"""The enumeration base every osteolake enum uses: members accept their string value (case-insensitive)."""

from __future__ import annotations

import enum
from typing import Any


class StrValueEnum(enum.Enum):
    """An enum whose members can be given as themselves or as their string value, in any case
    (``Severity("CRITICAL") is Severity.CRITICAL``), as highdicom's ``*Values`` enums do."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            for m in cls:
                if m.value == value.lower():
                    return m
        return None
