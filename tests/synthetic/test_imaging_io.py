"""The fast series writer writes the same bytes as pydicom's dcmwrite."""

from __future__ import annotations

from pathlib import Path

import pydicom

from synthetic import dicom_io as io
from synthetic.anatomy import build_anatomy
from synthetic.ct import default_params, render_ct_series
from synthetic.population import make_population


def test_write_series_is_byte_identical_to_dcmwrite(tmp_path: Path) -> None:
    p = make_population(1, 2)[0]
    a = build_anatomy(p)
    l3 = a.vertebra("L3")
    for syntax in ("explicit", "implicit"):
        prm = default_params(a, pixel_mm=6.0, z_start=round(l3.zc) - 6, z_end=round(l3.zc) + 6, syntax=syntax)
        dss, _ = render_ct_series(p, p.baseline, prm, seed=1, anat=a)
        fast = [tmp_path / syntax / f"f{k}" for k in range(len(dss))]
        io.write_series(dss, fast)
        for k, ds in enumerate(dss):
            ref = tmp_path / syntax / f"r{k}"
            pydicom.dcmwrite(ref, ds, enforce_file_format=True)
            assert fast[k].read_bytes() == ref.read_bytes()
        assert pydicom.dcmread(fast[0]).pixel_array.shape == (prm.matrix, prm.matrix)
