"""Latent patients of the synthetic hospital, their imaging schedule and their outcomes.

Everything downstream (CT phantoms, radiographs, DXA, OMOP tables, ground truth) is rendered from the
:class:`Patient` objects made here, so images and the clinical record tell one consistent story.

The hazard model (documented in ``synthetic/README.md``)::

    lp = -0.60 * (hu_l1_120 - 150) / 45      # lower L1 trabecular density (per SD)
         + 0.70 * [prevalent vertebral fracture grade >= 2] + 0.25 * [grade 1 only]
         + 0.04 * (age - 65) + 0.30 * [female] - 0.03 * (bmi - 26)
         + 0.45 * [prior fracture] + 0.40 * [glucocorticoids] + 0.30 * [parental hip fracture]
         + 0.20 * [current smoker] + 0.25 * [rheumatoid arthritis] + 0.20 * [alcohol >= 3 units/day]
         + 0.20 * [secondary osteoporosis] - 0.03 * (muscle_hu - 40)

    major osteoporotic fracture (MOF): Weibull hazard h(t) = k / s * (t / s)^(k-1) * exp(lp), k = 1.3,
    s chosen so that an average patient has about a 20% ten-year risk; the site of a MOF is hip 25%,
    clinical vertebral 30%, distal forearm 30%, proximal humerus 15%, independent of lp, so the hip
    hazard is proportional to the MOF hazard and one linear predictor serves both outcomes.
    death competes: Gompertz in age (doubling every 8 years); administrative censoring at DATA_CUTOFF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
DATA_CUTOFF = date(2026, 6, 30)
ISSUER = "OSTEOLAKE-GENERAL"
MOF_SITES: tuple[tuple[str, float], ...] = (
    ("hip", 0.25),
    ("vertebral", 0.30),
    ("forearm", 0.30),
    ("humerus", 0.15),
)
STUDY_KINDS: tuple[str, ...] = ("ct_abdomen", "ct_chest", "dx_spine", "dxa", "mr")
# Trabecular attenuation of each level relative to L1 (thoracic slightly denser, lower lumbar slightly less).
LEVEL_HU_OFFSET: dict[str, float] = {
    "T10": 12.0, "T11": 8.0, "T12": 4.0, "L1": 0.0, "L2": -3.0, "L3": -6.0, "L4": -8.0, "L5": -10.0,
}
WEIBULL_K = 1.3
WEIBULL_SCALE_YEARS = 38.0
_GIVEN = ("Anna", "Maria", "Eva", "Ruth", "Clara", "Jon", "Paul", "Omar", "Ivan", "Lena", "Sara", "Tom")
_FAMILY = ("Berg", "Kim", "Novak", "Silva", "Okafor", "Lind", "Moreau", "Haas", "Kowal", "Park", "Reyes")


@dataclass
class VertebralFracture:
    """A prevalent vertebral fracture present at baseline."""

    level: str
    grade: int  # Genant 1-3
    kind: str  # wedge | biconcave | crush
    height_loss: float  # fraction of the reference height lost at the deformed point
    recorded: bool  # diagnosed in the clinical record before the first image


@dataclass
class Study:
    """One imaging study of a patient."""

    kind: str
    study_date: date
    index: int


@dataclass
class Outcome:
    """Follow-up from baseline: first MOF (site and date), death, end of follow-up."""

    mof_date: date | None
    mof_site: str | None
    death_date: date | None
    end_date: date  # first of MOF, death or cutoff


@dataclass
class Patient:
    index: int
    patient_id: str
    name: str
    sex: str
    birth_date: date
    height_cm: float
    weight_kg: float
    bmd_z: float  # latent bone density deviation for age and sex (SD units)
    muscle_hu: float  # L3 skeletal muscle attenuation at 120 kVp, non-contrast
    muscle_z: float  # latent muscle mass deviation (SD units)
    vat_z: float  # latent visceral fat deviation
    smoker: bool
    alcohol_3u: bool
    glucocorticoids: bool
    rheumatoid_arthritis: bool
    secondary_osteoporosis: bool
    parental_hip_fracture: bool
    prior_fracture_date: date | None
    prior_fracture_site: str | None
    falls: bool
    treated: bool
    site: str  # hospital site, for site-split validation
    baseline: date
    studies: list[Study] = field(default_factory=list)
    fractures: list[VertebralFracture] = field(default_factory=list)
    outcome: Outcome | None = None
    lp: float = 0.0

    @property
    def bmi(self) -> float:
        return self.weight_kg / (self.height_cm / 100.0) ** 2

    @property
    def female(self) -> bool:
        return self.sex == "F"

    def age_at(self, d: date) -> float:
        return (d - self.birth_date).days / 365.25

    def hu_l1_120(self, at: date) -> float:
        """True L1 trabecular attenuation at 120 kVp without contrast on date ``at`` (HU)."""
        return trabecular_hu(self.age_at(at), self.female, self.bmd_z)

    def hu_level_120(self, level: str, at: date) -> float:
        return self.hu_l1_120(at) + LEVEL_HU_OFFSET[level]

    def fracture_at(self, level: str) -> VertebralFracture | None:
        for f in self.fractures:
            if f.level == level:
                return f
        return None

    def dxa_tscore(self, at: date) -> float:
        """Noise-free femoral-neck T-score implied by the latent density (DXA adds its own noise)."""
        return (self.hu_l1_120(at) - 195.0) / 38.0


def trabecular_hu(age: float, female: bool, bmd_z: float) -> float:
    """Population model of L1 trabecular HU: ~2.5 HU/year decline after 30 (Jang 2019), faster in women
    after menopause, SD ~42 HU at a given age."""
    base = 235.0 - 2.5 * max(age - 30.0, 0.0)
    if female:
        base -= 1.0 * max(age - 50.0, 0.0)
    return max(base + 42.0 * bmd_z, 25.0)


def linear_predictor(p: Patient) -> float:
    """True linear predictor of the MOF (and hip) hazard at baseline; see the module docstring."""
    age = p.age_at(p.baseline)
    grades = [f.grade for f in p.fractures]
    lp = -0.60 * (p.hu_l1_120(p.baseline) - 150.0) / 45.0
    lp += 0.70 if any(g >= 2 for g in grades) else (0.25 if grades else 0.0)
    lp += 0.04 * (age - 65.0) + (0.30 if p.female else 0.0) - 0.03 * (p.bmi - 26.0)
    lp += 0.45 * (p.prior_fracture_date is not None) + 0.40 * p.glucocorticoids
    lp += 0.30 * p.parental_hip_fracture + 0.20 * p.smoker + 0.25 * p.rheumatoid_arthritis
    lp += 0.20 * p.alcohol_3u + 0.20 * p.secondary_osteoporosis - 0.03 * (p.muscle_hu - 40.0)
    return lp


def _fractures(rng: np.random.Generator, hu: float, age: float) -> list[VertebralFracture]:
    # Prevalence rises steeply as density falls: ~5% at 200 HU, ~60% at 80 HU.
    p_any = 1.0 / (1.0 + math.exp((hu - 115.0) / 22.0))
    out: list[VertebralFracture] = []
    if rng.random() >= p_any:
        return out
    n = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.15)
    candidates = ["T11", "T12", "L1", "L2", "L3", "L4", "T10", "L5"]
    weights = np.array([0.14, 0.22, 0.24, 0.14, 0.1, 0.08, 0.05, 0.03])
    levels = rng.choice(candidates, size=n, replace=False, p=weights / weights.sum())
    for level in levels:
        grade = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        lo, hi = {1: (0.21, 0.245), 2: (0.27, 0.38), 3: (0.43, 0.55)}[grade]
        kind = str(rng.choice(["wedge", "biconcave", "crush"], p=[0.55, 0.3, 0.15]))
        out.append(
            VertebralFracture(
                level=str(level), grade=grade, kind=kind, height_loss=float(rng.uniform(lo, hi)),
                recorded=bool(rng.random() < 0.3),
            )
        )
    return sorted(out, key=lambda f: LEVELS.index(f.level))


def _outcome(rng: np.random.Generator, p: Patient) -> Outcome:
    lp = p.lp
    u = rng.random()
    # Inverse of the Weibull cumulative hazard H(t) = (t/s)^k * exp(lp).
    t_mof = WEIBULL_SCALE_YEARS * (-math.log(u) / math.exp(lp)) ** (1.0 / WEIBULL_K)
    age0 = p.age_at(p.baseline)
    # Gompertz death: h(age) = a * exp(b * age), b = ln2/8; a gives ~1.5%/year at 70.
    b = math.log(2.0) / 8.0
    a = 0.015 / math.exp(b * 70.0)
    v = rng.random()
    t_death = math.log(1.0 - b * math.log(v) / (a * math.exp(b * age0))) / b
    cutoff_years = (DATA_CUTOFF - p.baseline).days / 365.25
    mof_date = death_date = None
    site = None
    if t_mof < min(t_death, cutoff_years):
        mof_date = p.baseline + timedelta(days=max(1, int(t_mof * 365.25)))
        names = [s for s, _ in MOF_SITES]
        site = str(rng.choice(names, p=[w for _, w in MOF_SITES]))
    if t_death < cutoff_years:
        death_date = p.baseline + timedelta(days=max(1, int(t_death * 365.25)))
        if mof_date is not None and death_date <= mof_date:
            death_date = mof_date + timedelta(days=1)
    ends = [d for d in (mof_date, death_date) if d is not None] + [DATA_CUTOFF]
    return Outcome(mof_date=mof_date, mof_site=site, death_date=death_date, end_date=min(ends))


def make_patient(seed: int, index: int) -> Patient:
    """Patient ``index`` of the hospital with ``seed``; independent of how many patients are made."""
    rng = np.random.default_rng([seed, index, 0x0573])
    sex = "F" if rng.random() < 0.58 else "M"
    baseline = date(2008, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 10)))
    age0 = float(np.clip(rng.normal(66.0, 11.0), 40.0, 92.0))
    birth = baseline - timedelta(days=int(age0 * 365.25))
    height = float(rng.normal(163.0 if sex == "F" else 176.0, 7.0))
    bmi = float(np.clip(rng.normal(26.5, 4.5), 16.5, 45.0))
    weight = bmi * (height / 100.0) ** 2
    bmd_z = float(rng.normal(0.0, 1.0))
    muscle_z = float(rng.normal(0.0, 1.0))
    muscle_hu = float(np.clip(48.0 - 0.35 * max(age0 - 40.0, 0.0) + 7.0 * muscle_z + 2.0 * bmd_z, 5.0, 70.0))
    gc = bool(rng.random() < 0.08)
    prior = rng.random() < 0.12 + 0.004 * max(age0 - 50.0, 0.0)
    prior_date = baseline - timedelta(days=int(rng.integers(200, 3000))) if prior else None
    name = f"{_FAMILY[int(rng.integers(len(_FAMILY)))]}^{_GIVEN[int(rng.integers(len(_GIVEN)))]}"
    p = Patient(
        index=index,
        patient_id=f"MRN{int(rng.integers(10**6, 10**7)):07d}{index:05d}",
        name=name,
        sex=sex,
        birth_date=birth,
        height_cm=round(height, 1),
        weight_kg=round(weight, 1),
        bmd_z=bmd_z - (0.6 if gc else 0.0),
        muscle_hu=muscle_hu,
        muscle_z=muscle_z,
        vat_z=float(rng.normal(0.0, 1.0)),
        smoker=bool(rng.random() < 0.15),
        alcohol_3u=bool(rng.random() < 0.06),
        glucocorticoids=gc,
        rheumatoid_arthritis=bool(rng.random() < 0.04),
        secondary_osteoporosis=bool(rng.random() < 0.07),
        parental_hip_fracture=bool(rng.random() < 0.12),
        prior_fracture_date=prior_date,
        prior_fracture_site=str(rng.choice(["forearm", "humerus", "ankle"])) if prior else None,
        falls=bool(rng.random() < 0.10 + 0.005 * max(age0 - 60.0, 0.0)),
        treated=False,
        site=str(rng.choice(["north", "south"], p=[0.6, 0.4])),
        baseline=baseline,
    )
    p.fractures = _fractures(rng, p.hu_l1_120(baseline), age0)
    p.treated = bool(rng.random() < (0.45 if any(f.recorded for f in p.fractures) else 0.05))
    n_studies = int(rng.choice([0, 1, 2, 3], p=[0.06, 0.44, 0.32, 0.18]))
    kinds: list[str] = []
    for i in range(n_studies):
        if i == 0:
            kinds.append(str(rng.choice(["ct_abdomen", "ct_chest", "dx_spine", "dxa"], p=[0.55, 0.2, 0.15, 0.1])))
        else:
            kinds.append(str(rng.choice(STUDY_KINDS, p=[0.3, 0.15, 0.2, 0.2, 0.15])))
    day = 0
    for i, kind in enumerate(kinds):
        p.studies.append(Study(kind=kind, study_date=baseline + timedelta(days=day), index=i))
        day += int(rng.integers(30, 900))
    p.lp = linear_predictor(p)
    p.outcome = _outcome(rng, p)
    p.studies = [s for s in p.studies if s.study_date <= p.outcome.end_date and s.study_date <= DATA_CUTOFF]
    return p


def make_population(n: int, seed: int) -> list[Patient]:
    """``n`` patients, deterministic for ``seed``."""
    if n < 0:
        raise ValueError(f"patients must be >= 0, got {n}")
    return [make_patient(seed, i) for i in range(n)]
