"""The data dictionary (``docs/data_dictionary.md``), generated from the table declarations.

Regenerate with ``python -m schemas.dictionary`` (a test compares the committed file with a fresh render).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from schemas.core import Layer, Table
from schemas.ddl import duckdb_type

__all__ = ["render_markdown", "DEFAULT_PATH", "main"]

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "data_dictionary.md"

_HEADER = """# osteolake data dictionary

Generated from `schemas/tables/*.py` by `python -m schemas.dictionary`; do not edit by hand.
Every table is a view in `WH/osteolake.duckdb`: `<layer>.<table>` and, unqualified, `<table>`.
PHI classes: `none` (not about a person), `pseudonymous` (keyed pseudonym), `quasi` (could help
re-identify in combination: ages, dates, sex, UIDs). Direct identifiers never enter the warehouse.
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _range(c_min: float | None, c_max: float | None, allowed: tuple[object, ...] | None) -> str:
    if allowed is not None:
        return ", ".join(f"`{a}`" for a in allowed)
    if c_min is None and c_max is None:
        return ""
    lo = "" if c_min is None else f"{c_min:g}"
    hi = "" if c_max is None else f"{c_max:g}"
    return f"{lo} .. {hi}"


def _table_md(t: Table) -> list[str]:
    key = ", ".join(f"`{k}`" for k in t.key) or "(none)"
    lines = [
        f"### `{t.layer.value}.{t.name}`",
        "",
        f"**Grain:** {t.grain}. **Key:** {key}.",
        "",
        _cell(t.description),
        "",
        "| column | type | unit | range / values | null | PHI | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in t.columns:
        lines.append(
            f"| `{c.name}` | {duckdb_type(c.type)} | {_cell(c.unit or '')} | {_cell(_range(c.min, c.max, c.allowed))} "
            f"| {'yes' if c.nullable else 'no'} | {c.phi.value} | {_cell(c.description)} |"
        )
    lines.append("")
    return lines


def render_markdown(tables: Iterable[Table] | None = None) -> str:
    """Markdown for ``tables`` (default: every declared table), grouped by layer, sorted by name."""
    if tables is None:
        from schemas.registry import TABLES

        tables = TABLES.values()
    by_layer: dict[Layer, list[Table]] = {layer: [] for layer in Layer}
    for t in tables:
        by_layer[t.layer].append(t)
    lines = [_HEADER]
    lines.append("| table | layer | grain |")
    lines.append("|---|---|---|")
    for layer in Layer:
        for t in sorted(by_layer[layer], key=lambda t: t.name):
            lines.append(f"| [`{t.name}`](#{layer.value}{t.name}) | {layer.value} | {_cell(t.grain)} |")
    lines.append("")
    for layer in Layer:
        if not by_layer[layer]:
            continue
        lines.append(f"## {layer.value}")
        lines.append("")
        for t in sorted(by_layer[layer], key=lambda t: t.name):
            lines.extend(_table_md(t))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dictionary to ``argv[0]`` (default ``docs/data_dictionary.md``)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0].startswith("-"):
        print("usage: python -m schemas.dictionary [OUT.md]  (default: docs/data_dictionary.md)")
        return 0 if args[0] in ("-h", "--help") else 2
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render_markdown())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
