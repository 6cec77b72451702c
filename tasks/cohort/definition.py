"""Declarative cohort definitions (YAML): entry series rules, age, lookback, washout, outcome, censoring."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

DEFAULT_DEFINITION = Path(__file__).parent / "default.yaml"


@dataclass(frozen=True)
class SeriesRule:
    """A series is eligible under the rule when every given condition holds."""

    modality: tuple[str, ...]
    exclude_image_type: tuple[str, ...] = ()
    max_slice_thickness_mm: float | None = None


@dataclass(frozen=True)
class CohortDefinition:
    name: str
    version: str
    series_rules: tuple[SeriesRule, ...]
    age_min: float
    age_max: float
    lookback_days: int
    washout_days: int
    mof_sites: tuple[str, ...]
    hip_site: str
    data_cutoff: date | None
    measurement_lookback_days: int | None

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def digest(self) -> str:
        """Content hash (16 hex) of the definition, for model provenance."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ValueError(f"cohort definition {where}: missing {key!r}")
    return d[key]


def load_definition(path: Path | None = None) -> CohortDefinition:
    """Load and check a cohort definition; ``ValueError`` names the file and the entry that is wrong."""
    path = Path(path or DEFAULT_DEFINITION)
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cohort definition {where}: cannot read YAML ({e})") from e
    if not isinstance(doc, dict):
        raise ValueError(f"cohort definition {where}: expected a mapping")
    rules = []
    for i, r in enumerate(_req(_req(doc, "entry", where), "series_rules", where)):
        if not isinstance(r, dict) or not r.get("modality"):
            raise ValueError(f"cohort definition {where}: entry.series_rules[{i}] needs 'modality'")
        mx = r.get("max_slice_thickness_mm")
        rules.append(SeriesRule(tuple(str(m).upper() for m in r["modality"]),
                                tuple(str(t).upper() for t in r.get("exclude_image_type", []) or []),
                                float(mx) if mx is not None else None))
    age = _req(doc, "age_years", where)
    outcome = _req(doc, "outcome", where)
    cens = doc.get("censoring") or {}
    cutoff = cens.get("data_cutoff")
    if cutoff is not None and not isinstance(cutoff, date):
        try:
            cutoff = date.fromisoformat(str(cutoff))
        except ValueError as e:
            raise ValueError(f"cohort definition {where}: censoring.data_cutoff {cutoff!r} is not a date") from e
    d = CohortDefinition(
        name=str(_req(doc, "name", where)), version=str(_req(doc, "version", where)), series_rules=tuple(rules),
        age_min=float(age.get("min", 0)), age_max=float(age.get("max", 120)),
        lookback_days=int(doc.get("lookback_days", 0)), washout_days=int(doc.get("washout_days", 0)),
        mof_sites=tuple(str(s) for s in _req(outcome, "mof_sites", where)),
        hip_site=str(outcome.get("hip_site", "hip")), data_cutoff=cutoff,
        measurement_lookback_days=(doc.get("features") or {}).get("measurement_lookback_days"),
    )
    if d.age_min > d.age_max or d.lookback_days < 0 or d.washout_days < 0:
        raise ValueError(f"cohort definition {where}: age range, lookback_days or washout_days is impossible")
    return d
