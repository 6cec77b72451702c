"""Genant semi-quantitative grading of vertebral fractures from measured vertebral body heights.

Input is one set of anterior, middle and posterior heights (Ha, Hm, Hp) per vertebral level, however they
were measured (CT mid-sagittal reformat, lateral radiograph). Three height ratios describe the shape:

- wedge: Ha / Hp (anterior height loss),
- biconcave: Hm / Hp (central endplate depression),
- crush: Hp against the posterior heights of the neighbouring levels (the whole body is lower).

Each ratio is compared with the ratio of a normal vertebra (``NormalShape``); the largest relative height
loss gives the Genant grade (0 <20%, 1 20-25%, 2 25-40%, 3 >40%) and its deformity the fracture type.
The spinal deformity index (SDI) of a series is the sum of its grades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.enums import StrValueEnum

LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
# Lower bounds of Genant grades 1, 2 and 3 (fraction of height lost).
GRADE_BOUNDS: tuple[float, float, float] = (0.20, 0.25, 0.40)
# Anatomically plausible adult thoracolumbar body heights (mm) and height ratios; a measurement outside is a
# failed measurement (a missed endplate, a neighbour's edge), not a fracture, and is not graded.
PLAUSIBLE_HEIGHT_MM: tuple[float, float] = (5.0, 60.0)
PLAUSIBLE_RATIO: tuple[float, float] = (0.2, 1.5)


class FractureType(StrValueEnum):
    """Genant morphological type; ``NONE`` for grade 0."""

    NONE = "none"
    WEDGE = "wedge"
    BICONCAVE = "biconcave"
    CRUSH = "crush"



@dataclass(frozen=True)
class VertebralHeights:
    """Measured heights of one vertebral body (mm); ``None`` where a height could not be measured."""

    level: str
    anterior_mm: float | None
    middle_mm: float | None
    posterior_mm: float | None


@dataclass(frozen=True)
class NormalShape:
    """Shape of a normal vertebra that the ratios are compared with.

    ``anterior_ratio`` and ``middle_ratio`` give the normal Ha/Hp and Hm/Hp per level (missing levels use
    1.0, the plain Genant comparison); ``posterior_profile`` gives relative normal posterior heights per
    level, used to carry a neighbour's Hp over to the level being graded (missing levels use 1.0).
    """

    anterior_ratio: Mapping[str, float] = field(default_factory=dict)
    middle_ratio: Mapping[str, float] = field(default_factory=dict)
    posterior_profile: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GenantResult:
    """Ratios, height loss, grade and type of one vertebra."""

    level: str
    height_anterior_mm: float | None
    height_middle_mm: float | None
    height_posterior_mm: float | None
    ratio_anterior_posterior: float | None
    ratio_middle_posterior: float | None
    ratio_posterior_neighbours: float | None
    reference_posterior_mm: float | None
    height_loss: float | None
    genant_grade: int | None
    deformity: FractureType | None
    flags: tuple[str, ...] = ()


def genant_grade(height_loss: float) -> int:
    """Genant grade 0-3 for a fractional height loss.

    Parameters
    ----------
    height_loss
        Fraction of the expected height lost (0.3 = 30%). Negative values (taller than expected) are grade 0.

    Returns
    -------
    int
        0 below 20%, 1 for 20-25%, 2 for 25-40%, 3 above 40%.
    """
    if not math.isfinite(height_loss):
        raise ValueError(f"height_loss must be finite, got {height_loss!r}")
    g1, g2, g3 = GRADE_BOUNDS
    if height_loss < g1:
        return 0
    if height_loss < g2:
        return 1
    if height_loss <= g3:
        return 2
    return 3


def _level_index(level: str) -> int:
    try:
        return LEVELS.index(level)
    except ValueError as e:
        raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}") from e


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def _reference_posterior(
    i: int, by_index: Mapping[int, VertebralHeights], shape: NormalShape, exclude: set[int]
) -> float | None:
    """Expected Hp of level ``i`` from the adjacent levels' Hp, scaled by the normal posterior profile."""
    level = LEVELS[i]
    p_i = shape.posterior_profile.get(level, 1.0)
    refs = []
    for j in (i - 1, i + 1):
        v = by_index.get(j)
        if v is None or j in exclude or not _ok(v.posterior_mm):
            continue
        assert v.posterior_mm is not None
        refs.append(v.posterior_mm * p_i / shape.posterior_profile.get(LEVELS[j], 1.0))
    if not refs:
        return None
    return sum(refs) / len(refs)


def _plausible(x: float | None, bounds: tuple[float, float]) -> bool:
    return x is not None and math.isfinite(x) and bounds[0] <= x <= bounds[1]


def check_plausibility(v: VertebralHeights) -> tuple[VertebralHeights, tuple[str, ...]]:
    """Heights of ``v`` with implausible measurements set to None, and the flags saying why.

    A height outside ``PLAUSIBLE_HEIGHT_MM`` becomes None (``implausible_height``). When Ha/Hp or Hm/Hp
    falls outside ``PLAUSIBLE_RATIO`` one of the heights is wrong but not which one, so all three become
    None (``implausible_ratio``).
    """
    flags: list[str] = []
    hs = [v.anterior_mm, v.middle_mm, v.posterior_mm]
    for i, h in enumerate(hs):
        if h is not None and not _plausible(h, PLAUSIBLE_HEIGHT_MM):
            hs[i] = None
            flags.append("implausible_height")
    ha, hm, hp = hs
    if hp is not None and any(h is not None and not _plausible(h / hp, PLAUSIBLE_RATIO) for h in (ha, hm)):
        hs = [None, None, None]
        flags.append("implausible_ratio")
    return VertebralHeights(v.level, *hs), tuple(dict.fromkeys(flags))


def _grade_one(v: VertebralHeights, ref_p: float | None, shape: NormalShape,
               flags: tuple[str, ...] = ()) -> GenantResult:
    ha, hm, hp = v.anterior_mm, v.middle_mm, v.posterior_mm
    r_ap = ha / hp if _ok(ha) and _ok(hp) else None  # type: ignore[operator]
    r_mp = hm / hp if _ok(hm) and _ok(hp) else None  # type: ignore[operator]
    r_pn = hp / ref_p if _ok(hp) and ref_p else None  # type: ignore[operator]
    if r_pn is not None and not _plausible(r_pn, PLAUSIBLE_RATIO):
        # Hp against the neighbours outside 0.2-1.5: this body or its neighbours were mis-measured
        r_pn = None
        flags = (*flags, "implausible_ratio")
    losses: dict[FractureType, float] = {}
    if r_ap is not None:
        losses[FractureType.WEDGE] = 1.0 - r_ap / shape.anterior_ratio.get(v.level, 1.0)
    if r_mp is not None:
        losses[FractureType.BICONCAVE] = 1.0 - r_mp / shape.middle_ratio.get(v.level, 1.0)
    if r_pn is not None:
        losses[FractureType.CRUSH] = 1.0 - r_pn
    if not losses:
        return GenantResult(v.level, ha, hm, hp, r_ap, r_mp, r_pn, ref_p, None, None, None, flags)
    kind, loss = max(losses.items(), key=lambda kv: kv[1])
    grade = genant_grade(loss)
    return GenantResult(
        level=v.level,
        height_anterior_mm=ha,
        height_middle_mm=hm,
        height_posterior_mm=hp,
        ratio_anterior_posterior=r_ap,
        ratio_middle_posterior=r_mp,
        ratio_posterior_neighbours=r_pn,
        reference_posterior_mm=ref_p,
        height_loss=max(loss, 0.0),
        genant_grade=grade,
        deformity=kind if grade > 0 else FractureType.NONE,
        flags=flags,
    )


def grade_vertebrae(
    heights: Sequence[VertebralHeights], shape: NormalShape | None = None
) -> list[GenantResult]:
    """Grade every vertebra of one series.

    Parameters
    ----------
    heights
        Heights per level (any subset of T10-L5, each level at most once, any order).
    shape
        Normal vertebral shape to compare with; default: plain ratios (normal Ha/Hp = Hm/Hp = 1, equal
        posterior heights at adjacent levels).

    Returns
    -------
    list of GenantResult
        One per input level, in cranio-caudal order. Grade and type are ``None`` where no ratio could be
        formed (missing heights and no measured neighbour).

    Notes
    -----
    Heights and ratios are checked for anatomical plausibility first (:func:`check_plausibility`; Hp
    against the neighbours as well): implausible values become None with a flag in ``GenantResult.flags``
    and are not graded, so no ratio outside 0.2-1.5 and no height outside 5-60 mm is ever returned.
    The crush ratio compares Hp with the mean Hp of the adjacent levels present (one neighbour at the ends
    of the covered range). A neighbour that is itself crushed (its Hp >= 20% below its own neighbours) is
    left out of the reference, so one collapsed body does not mask or mimic another. Two adjacent crush
    fractures of similar severity may still be under-graded: the check does not guarantee detection then.
    """
    shape = shape or NormalShape()
    by_index: dict[int, VertebralHeights] = {}
    checks: dict[int, tuple[str, ...]] = {}
    for v in heights:
        i = _level_index(v.level)
        if i in by_index:
            raise ValueError(f"heights: level {v.level} given twice")
        by_index[i], checks[i] = check_plausibility(v)
    # First pass: find bodies whose posterior height is clearly below both neighbours'.
    crushed: set[int] = set()
    for i, v in by_index.items():
        ref = _reference_posterior(i, by_index, shape, set())
        if ref and _ok(v.posterior_mm) and v.posterior_mm / ref < 1.0 - GRADE_BOUNDS[0]:  # type: ignore[operator]
            crushed.add(i)
    out = []
    for i in sorted(by_index):
        ref = _reference_posterior(i, by_index, shape, crushed - {i})
        out.append(_grade_one(by_index[i], ref, shape, checks[i]))
    return out


def spinal_deformity_index(results: Sequence[GenantResult]) -> int:
    """Spinal deformity index: the sum of the Genant grades of a series (ungraded levels count 0)."""
    return sum(r.genant_grade or 0 for r in results)
