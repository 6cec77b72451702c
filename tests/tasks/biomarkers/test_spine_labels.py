"""Level labels of the CT spine finder on the hospital's own series where the cues mislead it: a collapsed
body the detector does not see, and a sacrum in view only for its top."""

from __future__ import annotations

import numpy as np
import pytest

from bench.ct_accuracy import synthetic_case
from synthetic.anatomy import build_anatomy
from synthetic.population import make_patient
from tasks.biomarkers.spine import MISSED_BODY_GAP_RATIO, SpineFlag, _fill_gaps, analyse_spine


def _labels_against_truth(seed: int, index: int) -> tuple[dict[str, float], dict[str, list[str]], list[str]]:
    """(label z - true z) per labelled level T9-L5, the labels' flags, the series flags."""
    p = make_patient(seed, index)
    study = next(s for s in p.studies if s.kind in ("ct_abdomen", "ct_chest"))
    case = synthetic_case(p, study, seed, mix="clinical", cache=False)
    res = analyse_spine(case.volume, with_masks=False)
    true_z = {v.level: v.zc for v in build_anatomy(p).vertebrae}
    off = {v.level: v.z_mm - true_z[v.level] for v in res.vertebrae if v.level in true_z}
    return off, {v.level: v.flags for v in res.vertebrae}, res.flags


@pytest.mark.parametrize("seed,index", [(101, 5), (53, 30)])
def test_a_collapsed_body_the_detector_misses_is_put_back_and_counted(seed: int, index: int) -> None:
    # Both patients have a grade 3 wedge at T11 (anterior height 9-10 mm) that loses the cortical-shell
    # cue; counted past it, T10 and T11 were named on T9 and T10 (25-27 mm too high) and the T10 fracture
    # of (101, 5) was graded on a normal body.
    p = make_patient(seed, index)
    assert build_anatomy(p).vertebra("T11").grade == 3
    off, flags, _ = _labels_against_truth(seed, index)
    assert {"T10", "T11", "T12", "L1"} <= off.keys()
    assert all(abs(d) < 8.0 for d in off.values()), off
    assert SpineFlag.INTERPOLATED_BODY.value in flags["T11"]
    assert not any(SpineFlag.INTERPOLATED_BODY.value in f for lv, f in flags.items() if lv != "T11")


def test_a_sacrum_seen_only_as_a_sliver_anchors_the_levels() -> None:
    # An arterial-phase abdomen that ends 33 mm below S1: the sacrum shows as 5 mm of body-like slices (no
    # body), and enhanced kidneys pass for ribs at L1 and L2, so the rib cue alone named every level two
    # too low (55-76 mm). The sliver's width (the alae) finds the sacrum; the cues disagree, and say so.
    off, _, series_flags = _labels_against_truth(101, 17)
    assert {"T10", "L5"} <= off.keys()
    assert all(abs(d) < 8.0 for d in off.values()), off
    assert SpineFlag.TRANSITIONAL_ANATOMY_SUSPECTED.value in series_flags


def _feats(centres: list[float], height: float = 8.0) -> list[tuple]:
    """Features (k0, k1, ci, cj, rib, width, partial, rmax) on the 2.5 mm grid, head to feet."""
    return [(int(c - height / 2), int(c + height / 2), 40.0 + i, 50.0, False, 50.0, False, 20.0)
            for i, c in enumerate(centres)]


def test_fill_gaps_only_where_a_body_is_missing() -> None:
    ribs = np.zeros(200, dtype=bool)
    ribs[155:160] = True  # a rib head at the missing body's slices
    # regular spacing with the growth of real columns (about 11 -> 14 slices): nothing inserted
    regular = _feats([180, 169, 157, 144, 130, 116])
    assert _fill_gaps(regular, len(regular), ribs) == (regular, set())
    # a short (collapsed) body between normal ones shifts its centre: gaps 1.6x their neighbours' stay
    short = _feats([180, 169, 153, 144, 132])
    assert _fill_gaps(short, len(short), ribs)[1] == set()
    # one body missing: gaps 11, 22, 12 -> one body in the middle, with its own rib cue and a column
    # position between its neighbours'
    missing = _feats([180, 169, 147, 135])
    out, inserted = _fill_gaps(missing, len(missing), ribs)
    assert inserted == {2} and len(out) == 5
    k0, k1, ci, _, rib, *_ = out[2]
    assert abs(0.5 * (k0 + k1) - 158) <= 1 and rib and 41.0 < ci < 42.0
    assert 22 / np.mean([11, 12]) >= MISSED_BODY_GAP_RATIO
    # the sacrum (index ``end``) and below are not searched
    assert _fill_gaps(missing, 2, ribs)[1] == set()
