"""The reviewer's QC picture: decoded and checked against what the extraction measured."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bench.ct_accuracy import ct_cases, synthetic_case
from tasks.biomarkers import qc
from tasks.biomarkers.extract import measure_volume


def test_qc_picture_shows_levels_roi_and_compartments() -> None:
    p, s, thick = ct_cases(1, seed=11)[0]
    case = synthetic_case(p, s, 11, thick=thick, mix="clinical")
    res = measure_volume(case.volume, with_fracture=False, with_texture=False)
    assert res.qc_png is not None
    img = Image.open(io.BytesIO(res.qc_png))
    assert img.format == "PNG" and img.mode == "P" and img.height == 256
    idx = np.asarray(img)
    width = img.width - 256 - 4
    sag, ax = idx[:, :width], idx[:, width + 4 :]
    assert 64 <= width <= 512
    # Level marks and names on the reformat, one mark per labelled level at least.
    assert (sag == qc._MARK).sum() >= 8 * len(res.vertebrae)
    assert (sag == qc._TEXT).any()
    # Grey anatomy: bone bright, air dark, on both panels.
    grey = ax[ax < qc.GREY_LEVELS]
    assert grey.min() == 0 and grey.max() >= qc.GREY_LEVELS - 10
    # The L1 trabecular ROI, tinted, inside the bone; every compartment the L1 slice holds is outlined.
    assert any(v.level == "L1" for v in res.vertebrae)
    tinted = (ax >= qc._TINT) & (ax < 2 * qc.GREY_LEVELS)
    assert 20 <= tinted.sum() <= 2000
    l1 = res.body["L1"]
    assert l1.labels is not None
    for value, colour in qc._LABEL_INDEX.items():
        present = int((l1.labels == value).sum())
        drawn = int((ax == colour).sum())
        if present > 400:  # a compartment of a few cm2 at least
            assert drawn > 0, f"compartment {value} not drawn"
        if present == 0:
            assert drawn == 0, f"compartment {value} drawn but absent"
