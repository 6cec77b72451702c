"""All declared tables, by name. Each domain module under ``schemas/tables`` exports ``TABLES``."""

from __future__ import annotations

import importlib
import pkgutil

from schemas.core import Table

TABLES: dict[str, Table] = {}


def _load() -> None:
    import schemas.tables as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"schemas.tables.{mod.name}")
        for table in getattr(module, "TABLES", ()):
            if table.name in TABLES:
                raise ValueError(f"table {table.name!r} declared twice (schemas.tables.{mod.name})")
            TABLES[table.name] = table


def get_table(name: str) -> Table:
    """The declaration of table ``name``; a clear error names the known tables otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; declared tables: {', '.join(sorted(TABLES))}") from None


_load()
