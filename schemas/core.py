"""Table and column declarations: the single source of truth for the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from schemas.enums import StrValueEnum


class PHI(StrValueEnum):
    """Privacy class of a column.

    ``none``: not about a person; ``pseudonymous``: a keyed pseudonym (person_key);
    ``quasi``: could help re-identify in combination (age, dates, sex, UIDs); ``direct`` is never allowed
    in the warehouse and exists so that a declaration that tries it fails loudly.
    """

    NONE = "none"
    PSEUDONYMOUS = "pseudonymous"
    QUASI = "quasi"
    DIRECT = "direct"



class Layer(StrValueEnum):
    """Warehouse layer; also the DuckDB schema a table's view lives in."""

    BRONZE = "bronze"
    SILVER = "silver"
    MARTS = "marts"



@dataclass(frozen=True)
class Column:
    """One column: Arrow type, unit, allowed range or values, description and PHI class."""

    name: str
    type: pa.DataType
    description: str
    unit: str | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    phi: PHI = PHI.NONE

    def __post_init__(self) -> None:
        if self.phi is PHI.DIRECT:
            raise ValueError(f"column {self.name!r}: direct identifiers may not be declared in the warehouse")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} > max {self.max}")

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


@dataclass(frozen=True)
class Table:
    """One warehouse table: its grain (what one row is), key, columns and layer."""

    name: str
    layer: Layer
    grain: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    critical_checks: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"table {self.name!r}: duplicate columns {sorted(dupes)}")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"table {self.name!r}: key columns {missing} are not declared")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([c.field() for c in self.columns], metadata={"grain": self.grain, "table": self.name})

    def conform(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with exactly the declared columns, in order, cast to the declared types.

        Missing nullable columns are added as nulls; unknown columns are an error (nothing is dropped
        silently), as is a missing non-nullable column.
        """
        extra = [n for n in table.column_names if n not in self.column_names]
        if extra:
            raise ValueError(f"table {self.name!r}: undeclared columns {extra}")
        arrays = []
        for col in self.columns:
            if col.name in table.column_names:
                arr = table.column(col.name)
                try:
                    arrays.append(arr.cast(col.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ValueError(
                        f"table {self.name!r}, column {col.name!r}: cannot cast {arr.type} to {col.type}"
                    ) from e
            else:
                if not col.nullable:
                    raise ValueError(f"table {self.name!r}: required column {col.name!r} is missing")
                arrays.append(pa.nulls(table.num_rows, type=col.type))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema())

    def empty(self) -> pa.Table:
        return self.arrow_schema().empty_table()
