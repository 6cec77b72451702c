"""Speed of ``extract_ct_series`` against simply reading the series' pixel data with pydicom.

A 512x512x~120 axial series (synthetic, 2.5 mm, T10-S1) is written to a temporary folder; the baseline
is ``pydicom.dcmread(f).pixel_array`` over every file, measured in the same run (best of 3 for both).
Ends with ``ct_speed: baseline_s=... extract_s=... ratio=...`` (target ratio <= 3).

Run: ``.venv/bin/python bench/ct_speed.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pydicom

from synthetic import ct as C
from synthetic.anatomy import build_anatomy
from synthetic.population import make_patient
from tasks.biomarkers.extract import extract_ct_series


def write_series(folder: Path, patient_index: int = 0, seed: int = 5) -> list[Path]:
    p = make_patient(seed, patient_index)
    params = C.default_params(build_anatomy(p))
    datasets, _ = C.render_ct_series(p, p.baseline, params, seed)
    paths = []
    for n, ds in enumerate(datasets):
        path = folder / f"IM{n:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def baseline(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in paths:
        _ = pydicom.dcmread(f).pixel_array
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_series(Path(tmp))
        base = min(baseline(paths) for _ in range(3))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            res = extract_ct_series(Path(tmp))
            times.append(time.perf_counter() - t0)
        ext = min(times)
        shape = res.volume.shape if res.volume else None
        print(f"series {shape}, levels {[v.level for v in res.vertebrae]}")
        print(f"ct_speed: n_files={len(paths)} baseline_s={base:.3f} extract_s={ext:.3f} ratio={ext / base:.2f}")


if __name__ == "__main__":
    main()
