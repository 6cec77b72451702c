"""Versioned concept sets (YAML) for fracture sites, the high-trauma exclusion and the risk factors.

The YAML files in ``tasks/clinical/phenotypes/`` document each concept set; this module loads and checks
them and turns them into Polars match expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

PHENOTYPE_DIR = Path(__file__).parent / "phenotypes"
DOMAINS = ("condition", "measurement", "observation", "drug", "procedure")
FACTOR_KINDS = ("number", "flag", "status", "exposure")


@dataclass(frozen=True)
class ConceptSet:
    """Concept ids plus source codes (exact) and source-code prefixes (ICD-10-CM)."""

    concept_ids: tuple[int, ...] = ()
    source_codes: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def matches(self, concept: str = "concept_id", source: str = "source_value") -> pl.Expr:
        """Expression: the record's source value is in the set (or starts with a prefix), or its concept is."""
        src = pl.col(source)
        by_source = src.is_in(list(self.source_codes)) if self.source_codes else pl.lit(False)
        for p in self.prefixes:
            by_source = by_source | src.str.starts_with(p)
        by_concept = pl.col(concept).is_in(list(self.concept_ids)) if self.concept_ids else pl.lit(False)
        return by_source.fill_null(False) | by_concept.fill_null(False)


@dataclass(frozen=True)
class FractureSite:
    name: str
    is_mof: bool
    description: str
    codes: ConceptSet


@dataclass(frozen=True)
class FracturePhenotype:
    """Fracture sites, the high-trauma exclusion and episode rules; see ``phenotypes/fractures.yaml``."""

    name: str
    version: str
    sites: tuple[FractureSite, ...]
    high_trauma: ConceptSet
    high_trauma_window_days: int
    episode_gap_days: int
    later_encounter_chars: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class RiskFactor:
    name: str
    domain: str
    kind: str
    codes: ConceptSet
    current: ConceptSet | None = None
    threshold: float | None = None
    min_days: int | None = None
    description: str = ""


@dataclass(frozen=True)
class RiskFactorPhenotype:
    name: str
    version: str
    factors: tuple[RiskFactor, ...]

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def factor(self, name: str) -> RiskFactor:
        for f in self.factors:
            if f.name == name:
                return f
        raise KeyError(f"risk-factor phenotype {self.label} has no factor {name!r}")


def _set(d: dict[str, Any], where: str, prefix: str = "") -> ConceptSet:
    try:
        return ConceptSet(
            concept_ids=tuple(int(x) for x in d.get(f"{prefix}concept_ids", []) or []),
            source_codes=tuple(str(x) for x in d.get(f"{prefix}source_codes", []) or []),
            prefixes=tuple(str(x) for x in d.get(f"{prefix}icd10cm_prefixes", []) or []),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: concept_ids must be integers and codes strings ({e})") from e


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"phenotype file {path}: cannot read YAML ({e})") from e
    if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
        raise ValueError(f"phenotype file {path}: needs a mapping with 'name' and 'version'")
    return doc


def load_fracture_phenotype(path: Path | None = None) -> FracturePhenotype:
    """Load ``fractures.yaml`` (or ``path``); ``ValueError`` names the file and entry that is wrong."""
    path = path or PHENOTYPE_DIR / "fractures.yaml"
    doc = _load(path)
    sites = []
    for name, s in (doc.get("sites") or {}).items():
        if not isinstance(s, dict) or "is_mof" not in s:
            raise ValueError(f"phenotype file {path}: site {name!r} needs 'is_mof' and codes")
        sites.append(FractureSite(name, bool(s["is_mof"]), str(s.get("description", "")),
                                  _set(s, f"{path}: site {name!r}")))
    if not sites:
        raise ValueError(f"phenotype file {path}: no sites")
    ht = doc.get("high_trauma") or {}
    return FracturePhenotype(
        name=str(doc["name"]), version=str(doc["version"]), sites=tuple(sites),
        high_trauma=_set(ht, f"{path}: high_trauma"), high_trauma_window_days=int(ht.get("window_days", 0)),
        episode_gap_days=int(doc.get("episode_gap_days", 90)),
        later_encounter_chars=tuple(str(c) for c in doc.get("later_encounter_7th_characters", [])),
    )


def load_risk_factor_phenotype(path: Path | None = None) -> RiskFactorPhenotype:
    """Load ``risk_factors.yaml`` (or ``path``); ``ValueError`` names the file and factor that is wrong."""
    path = path or PHENOTYPE_DIR / "risk_factors.yaml"
    doc = _load(path)
    factors = []
    for name, f in (doc.get("factors") or {}).items():
        where = f"phenotype file {path}: factor {name!r}"
        if not isinstance(f, dict) or f.get("domain") not in DOMAINS or f.get("kind") not in FACTOR_KINDS:
            raise ValueError(f"{where}: needs domain in {DOMAINS} and kind in {FACTOR_KINDS}")
        current = _set(f, where, "current_") if f["kind"] == "status" else None
        factors.append(RiskFactor(
            name=name, domain=f["domain"], kind=f["kind"], codes=_set(f, where), current=current,
            threshold=float(f["threshold"]) if "threshold" in f else None,
            min_days=int(f["min_days"]) if "min_days" in f else None,
            description=str(f.get("description", "")),
        ))
    return RiskFactorPhenotype(str(doc["name"]), str(doc["version"]), tuple(factors))
