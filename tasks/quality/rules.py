"""Domain rules across warehouse tables: plausible ranges, date order, referential integrity, keys,
completeness.

Rules name tables and columns; a rule whose table or column is not declared (yet) is skipped, and a rule
whose tables are not among the frames of a stage is skipped too (it runs at the stage that has them).
Evaluation is Polars over Arrow; no rule quotes identifiers in its details.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TypeAlias

import polars as pl
import pyarrow as pa

from schemas.core import PHI, Table
from tasks.quality.results import CheckKind, CheckResult, Severity

Frame: TypeAlias = pa.Table | pl.DataFrame
_MAX_SAMPLES = 5


def _pl(frame: Frame) -> pl.DataFrame:
    return frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Rule:
    table: str
    severity: Severity

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        """Columns needed, by table."""
        raise NotImplementedError

    @property
    def check_name(self) -> str:
        raise NotImplementedError

    def _result(self, success: bool, *, failing: int, total: int, observed: str, expected: str,
                details: str | None, column: str | None) -> CheckResult:
        return CheckResult(
            table=self.table, check=self.check_name, severity=Severity(self.severity), success=success,
            kind=CheckKind.DOMAIN, column=column, observed=observed, expected=expected,
            details=None if success else details, failing_count=failing, element_count=total,
        )

    def evaluate(self, frames: Mapping[str, pl.DataFrame], phi_free: frozenset[str] = frozenset()) -> CheckResult:
        raise NotImplementedError


@dataclass(frozen=True)
class RangeRule(_Rule):
    """Non-null values of ``table.column`` lie in [``min``, ``max``] (a plausibility window)."""

    column: str = ""
    min: float | None = None
    max: float | None = None
    why: str = ""

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.table: (self.column,)}

    @property
    def check_name(self) -> str:
        return f"plausible_range({self.column})"

    def evaluate(self, frames: Mapping[str, pl.DataFrame], phi_free: frozenset[str] = frozenset()) -> CheckResult:
        df = frames[self.table]
        col = pl.col(self.column)
        cond = pl.lit(False)
        if self.min is not None:
            cond = cond | (col < self.min)
        if self.max is not None:
            cond = cond | (col > self.max)
        bad = df.filter(col.is_not_null() & cond)
        n = bad.height
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        details = f"{n} value(s) of {self.column} outside [{lo}, {hi}]"
        if self.why:
            details += f" ({self.why})"
        if n and self.column in phi_free:
            details += "; e.g. " + ", ".join(str(v) for v in bad[self.column].head(_MAX_SAMPLES).to_list())
        return self._result(n == 0, failing=n, total=df.height, observed=f"{n} of {df.height} outside",
                            expected=f"{self.column} in [{lo}, {hi}]", details=details, column=self.column)


@dataclass(frozen=True)
class DateOrderRule(_Rule):
    """``earlier`` <= ``later`` (strictly < when ``strict``) in every row where both are known."""

    earlier: str = ""
    later: str = ""
    strict: bool = False

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.table: (self.earlier, self.later)}

    @property
    def check_name(self) -> str:
        return f"date_order({self.earlier}<{'' if self.strict else '='}{self.later})"

    def evaluate(self, frames: Mapping[str, pl.DataFrame], phi_free: frozenset[str] = frozenset()) -> CheckResult:
        df = frames[self.table]
        a, b = pl.col(self.earlier), pl.col(self.later)
        wrong = (a >= b) if self.strict else (a > b)
        n = df.filter(a.is_not_null() & b.is_not_null() & wrong).height
        op = "<" if self.strict else "<="
        return self._result(n == 0, failing=n, total=df.height, observed=f"{n} of {df.height} out of order",
                            expected=f"{self.earlier} {op} {self.later}",
                            details=f"{n} row(s) with {self.later} before {self.earlier}",
                            column=f"{self.earlier},{self.later}")


@dataclass(frozen=True)
class ReferenceRule(_Rule):
    """Every non-null ``table.columns`` tuple exists in ``parent.parent_columns`` (referential integrity)."""

    columns: tuple[str, ...] = ()
    parent: str = ""
    parent_columns: tuple[str, ...] = ()

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.table: self.columns, self.parent: self.parent_columns or self.columns}

    @property
    def check_name(self) -> str:
        return f"references({','.join(self.columns)}->{self.parent})"

    def evaluate(self, frames: Mapping[str, pl.DataFrame], phi_free: frozenset[str] = frozenset()) -> CheckResult:
        child = frames[self.table]
        pcols = self.parent_columns or self.columns
        parent = frames[self.parent].select(
            [pl.col(p).alias(c) for p, c in zip(pcols, self.columns, strict=True)]).unique()
        keys = child.select(self.columns).drop_nulls()
        for c in self.columns:  # compare like with like (e.g. int32 vs int64 ids)
            if keys.schema[c] != parent.schema[c]:
                parent = parent.with_columns(pl.col(c).cast(keys.schema[c], strict=False))
        orphans = keys.join(parent, on=list(self.columns), how="anti")
        n = orphans.height
        n_keys = orphans.unique().height
        cols = ",".join(self.columns)
        return self._result(
            n == 0, failing=n, total=child.height, observed=f"{n} of {child.height} orphan rows",
            expected=f"every {self.table}.{cols} in {self.parent}.{','.join(pcols)}",
            details=f"{n} row(s) ({n_keys} distinct key(s)) of {self.table} have no {self.parent} row",
            column=cols,
        )


@dataclass(frozen=True)
class UniqueRule(_Rule):
    """No two rows share ``columns`` (for grains that are not the declared key)."""

    columns: tuple[str, ...] = ()

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.table: self.columns}

    @property
    def check_name(self) -> str:
        return f"unique({','.join(self.columns)})"

    def evaluate(self, frames: Mapping[str, pl.DataFrame], phi_free: frozenset[str] = frozenset()) -> CheckResult:
        df = frames[self.table]
        dup = df.select(self.columns).is_duplicated()
        n = int(dup.sum())
        cols = ",".join(self.columns)
        return self._result(n == 0, failing=n, total=df.height, observed=f"{n} duplicated rows",
                            expected=f"one row per {cols}",
                            details=f"{n} row(s) share their {cols} with another row", column=cols)


@dataclass(frozen=True)
class CompletenessRule(_Rule):
    """At least ``min_fraction`` of the rows have ``column`` filled in (checked when the table has rows)."""

    column: str = ""
    min_fraction: float = 1.0

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.table: (self.column,)}

    @property
    def check_name(self) -> str:
        return f"completeness({self.column})"

    def evaluate(self, frames: Mapping[str, pl.DataFrame], phi_free: frozenset[str] = frozenset()) -> CheckResult:
        df = frames[self.table]
        nulls = int(df[self.column].null_count())
        frac = 1.0 if df.height == 0 else 1.0 - nulls / df.height
        ok = frac >= self.min_fraction
        return self._result(ok, failing=nulls, total=df.height, observed=f"{frac:.1%} filled",
                            expected=f">= {self.min_fraction:.0%} filled",
                            details=f"{self.column} filled in {frac:.1%} of rows, below {self.min_fraction:.0%}",
                            column=self.column)


Rule: TypeAlias = RangeRule | DateOrderRule | ReferenceRule | UniqueRule | CompletenessRule

C, W = Severity.CRITICAL, Severity.WARNING
_SERIES_CHILDREN = ("vertebra_measurements", "body_composition", "vertebral_fractures", "hip_geometry",
                    "texture", "deep_risk", "extraction_runs")

#: The rules run on the warehouse tables; sites may pass their own list to :func:`run_rules`.
DOMAIN_RULES: tuple[Rule, ...] = (
    # attenuation: bone and muscle windows (Pickhardt 2013; muscle is thresholded to -29..150 HU)
    RangeRule("vertebra_measurements", W, column="trabecular_hu_mean", min=-100, max=600,
              why="implausible trabecular attenuation"),
    RangeRule("body_composition", C, column="muscle_hu_mean", min=-29, max=150,
              why="muscle is segmented in -29..150 HU, its mean cannot leave that window"),
    RangeRule("features", W, column="l1_trabecular_hu", min=-100, max=600, why="implausible L1 attenuation"),
    RangeRule("features", C, column="muscle_hu_l3", min=-29, max=150, why="outside the muscle HU window"),
    # ages
    RangeRule("studies", W, column="age_at_study_years", min=0, max=110, why="implausible age"),
    RangeRule("series", W, column="age_at_study_years", min=0, max=110, why="implausible age"),
    RangeRule("cohort", W, column="age_at_index_years", min=18, max=110, why="adult cohort expected"),
    RangeRule("features", W, column="age_years", min=18, max=110, why="adult cohort expected"),
    # date order
    DateOrderRule("cohort", C, earlier="index_date", later="followup_end_date"),
    DateOrderRule("omop_persons", C, earlier="observation_start_date", later="observation_end_date"),
    DateOrderRule("omop_persons", W, earlier="observation_start_date", later="death_date"),
    DateOrderRule("risk_factors", W, earlier="start_date", later="end_date"),
    # referential integrity
    ReferenceRule("instances", C, columns=("series_instance_uid",), parent="series"),
    ReferenceRule("series", C, columns=("study_instance_uid",), parent="studies"),
    *(ReferenceRule(t, C, columns=("series_instance_uid",), parent="series") for t in _SERIES_CHILDREN),
    ReferenceRule("cohort", W, columns=("index_series_instance_uid",), parent="series",
                  parent_columns=("series_instance_uid",)),
    ReferenceRule("cohort", C, columns=("person_key",), parent="omop_persons"),
    ReferenceRule("features", C, columns=("person_key",), parent="cohort"),
    ReferenceRule("predictions", C, columns=("person_key",), parent="cohort"),
    ReferenceRule("fracture_events", W, columns=("person_key",), parent="omop_persons"),
    ReferenceRule("predictions", C, columns=("model_version",), parent="model_registry"),
    ReferenceRule("model_metrics", C, columns=("model_version",), parent="model_registry"),
    # completeness
    CompletenessRule("vertebra_measurements", W, column="trabecular_hu_mean", min_fraction=0.8),
    CompletenessRule("features", W, column="age_years", min_fraction=0.99),
    CompletenessRule("features", W, column="l1_trabecular_hu", min_fraction=0.5),
    CompletenessRule("series", W, column="modality", min_fraction=1.0),
)


def applicable(rule: Rule, declared: Mapping[str, Table] | None) -> bool:
    """Whether every table and column ``rule`` needs is declared (``None``: assume so)."""
    if declared is None:
        return True
    for table, cols in rule.needs.items():
        decl = declared.get(table)
        if decl is None or any(c not in decl.column_names for c in cols):
            return False
    return True


def run_rules(
    frames: Mapping[str, Frame],
    rules: Iterable[Rule] = DOMAIN_RULES,
    declared: Mapping[str, Table] | None = None,
    stage: str = "",
) -> list[CheckResult]:
    """Evaluate the rules whose tables are among ``frames``.

    Parameters
    ----------
    frames
        Tables by name (Arrow or Polars).
    rules
        Rules to evaluate; :data:`DOMAIN_RULES` by default.
    declared
        Table declarations (normally ``schemas.TABLES``): rules naming an undeclared table or column are
        skipped, and sample values are quoted only for columns declared ``PHI.NONE``. ``None`` runs every
        rule and quotes no values.
    stage
        Stage name stamped on the results.

    Returns
    -------
    list of CheckResult
        One per evaluated rule. A needed column absent from the data is itself a failed result.
    """
    pl_frames = {name: _pl(f) for name, f in frames.items()}
    out: list[CheckResult] = []
    for rule in rules:
        if not applicable(rule, declared) or any(t not in pl_frames for t in rule.needs):
            continue
        missing = [f"{t}.{c}" for t, cols in rule.needs.items() for c in cols if c not in pl_frames[t].columns]
        if missing:
            out.append(CheckResult(
                table=rule.table, check=rule.check_name, severity=Severity(rule.severity), success=False,
                kind=CheckKind.DOMAIN, details=f"cannot evaluate: missing column(s) {', '.join(missing)}",
                stage=stage))
            continue
        phi_free: frozenset[str] = frozenset()
        if declared is not None and rule.table in declared:
            phi_free = frozenset(c.name for c in declared[rule.table].columns if c.phi is PHI.NONE)
        res = rule.evaluate(pl_frames, phi_free)
        out.append(replace(res, stage=stage))
    return out
