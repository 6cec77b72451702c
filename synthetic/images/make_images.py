"""Regenerate the README pictures: ``.venv/bin/python synthetic/images/make_images.py`` (about a minute).

Renders patient 0 of seed 1 through the same code paths as the archive and writes 8-bit PNGs here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
from PIL import Image

from synthetic.anatomy import build_anatomy
from synthetic.ct import default_params, render_ct_series
from synthetic.hospital import generate
from synthetic.population import make_population

HERE = Path(__file__).parent


def _png(img: np.ndarray, lo: float, hi: float, name: str, aspect: float = 1.0) -> None:
    u8 = (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(u8)
    if aspect != 1.0:
        im = im.resize((im.width, int(round(im.height * aspect))))
    im.save(HERE / name)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out, 3, 1)
        series = pq.read_table(out / "truth" / "series.parquet").to_pandas()
        arc = out / "archive"

        def files(kind: str) -> list[pydicom.Dataset]:
            row = series[series.kind == kind].iloc[0]
            return [pydicom.dcmread(f) for f in sorted((arc / row.folder).iterdir()) if f.stat().st_size > 1000]

        p = make_population(1, 1)[0]
        anat = build_anatomy(p)
        prm = default_params(anat, pixel_mm=0.8, fov_mm=410.0, slice_mm=2.0, noise_sd=14.0, correlated=True)
        dss, rows = render_ct_series(p, p.studies[0].study_date, prm, seed=1, anat=anat)
        vol = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
        zs = np.array([float(d.ImagePositionPatient[2]) for d in dss])
        for level in ("L1", "L3"):
            z = next(r["z_mm"] for r in rows if r["level"] == level)
            _png(vol[int(np.abs(zs - z).argmin())], -200, 400, f"ct_axial_{level.lower()}.png")
        col = int(np.argmin(np.abs(prm.center_x - prm.fov_mm / 2 + prm.spacing * (np.arange(prm.matrix) + 0.5))))
        _png(vol[:, :, col], -250, 1250, "ct_sagittal.png", aspect=prm.slice_mm / prm.spacing)
        dx = files("dx_lateral_spine")[0]
        _png(dx.pixel_array.astype(float), 0, 4095, "dx_lateral_spine.png")
        for kind in ("dxa_hip", "dxa_spine"):
            d = files(kind)[0]
            a = d.pixel_array.astype(float)
            _png(a, 0, np.percentile(a, 99.5), f"{kind}.png")


if __name__ == "__main__":
    main()
