"""Range discipline for extractor rows: no value outside its declared schema range leaves an extractor.

The data-quality gate treats a value outside a column's declared ``min``/``max`` as a critical failure that
blocks the nightly publish. Extractors check anatomical plausibility first (and say why in a flag); this is
the last guard, applied to the rows just before they are conformed to the declared table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from schemas.core import Table


def enforce_ranges(table: Table, rows: Sequence[dict[str, Any]], flag_column: str = "qc_flags",
                   ) -> list[dict[str, Any]]:
    """Copies of ``rows`` with every numeric value outside its column's declared range set to None.

    Parameters
    ----------
    table
        Declared table whose columns give ``min``/``max``.
    rows
        Row dicts keyed by column name.
    flag_column
        Comma-separated flag column that receives ``out_of_range_<column>`` for each value nulled (skipped
        when the table has no such column).

    Returns
    -------
    list of dict
        The checked rows; NaN and infinite values become None as well (flag ``not_finite_<column>``).

    Notes
    -----
    Nulling hides a measurement failure from the gate but not from the analyst: the flag stays on the row.
    It does not check plausibility beyond the declared range; extractors do that with domain knowledge.
    """
    limits = {c.name: (c.min, c.max) for c in table.columns if c.min is not None or c.max is not None}
    has_flags = any(c.name == flag_column for c in table.columns)
    out = []
    for row in rows:
        r = dict(row)
        added: list[str] = []
        for name, (lo, hi) in limits.items():
            v = r.get(name)
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(float(v)):
                r[name] = None
                added.append(f"not_finite_{name}")
            elif (lo is not None and v < lo) or (hi is not None and v > hi):
                r[name] = None
                added.append(f"out_of_range_{name}")
        if added and has_flags:
            old = [f for f in str(r.get(flag_column) or "").split(",") if f]
            r[flag_column] = ",".join(dict.fromkeys(old + added))
        out.append(r)
    return out
