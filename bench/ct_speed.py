"""Speed of ``extract_ct_series`` against simply reading the series' pixel data with pydicom.

A 512x512x~120 axial series (synthetic, 2.5 mm, T10-S1) is written to a temporary folder; the baseline
is ``pydicom.dcmread(f).pixel_array`` over every file, measured in the same run (best of 5 for all).
Three extractions are timed: everything ``extract_ct_series`` does by default (density, body composition,
vertebral heights and Genant grades from ``assess_ct``, trabecular texture, QC figure), the CT biomarkers
without the fracture assessment, and the core biomarkers alone (no fracture, texture or QC); plus the
volume load alone. Ends with ``ct_speed: baseline_s=... extract_s=... ratio=... ratio_no_fracture=...
ratio_core=... ratio_load=...`` (target ratio <= 3).

Run: ``.venv/bin/python bench/ct_speed.py``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

from synthetic import ct as C
from synthetic.anatomy import build_anatomy
from synthetic.population import make_patient
from tasks.biomarkers.extract import extract_ct_series
from tasks.dicom.volume import load_best_ct_volume


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


def _best(fn: Callable[[], object], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_series(folder)
        base = min(baseline(paths) for _ in range(5))
        res = extract_ct_series(folder)
        ext = _best(lambda: extract_ct_series(folder))
        no_frac = _best(lambda: extract_ct_series(folder, with_fracture=False))
        core = _best(lambda: extract_ct_series(folder, with_fracture=False, with_texture=False, with_qc=False))
        load = _best(lambda: load_best_ct_volume(folder))
        shape = res.volume.shape if res.volume else None
        print(f"series {shape}, levels {[v.level for v in res.vertebrae]}")
        print(f"  baseline (pydicom pixel_array) {base:.3f} s; load {load:.3f} s; core {core:.3f} s; "
              f"no fracture {no_frac:.3f} s; full {ext:.3f} s (assess_ct ~{ext - no_frac:.3f} s)")
        print(f"ct_speed: n_files={len(paths)} baseline_s={base:.3f} extract_s={ext:.3f} ratio={ext / base:.2f} "
              f"ratio_no_fracture={no_frac / base:.2f} ratio_core={core / base:.2f} ratio_load={load / base:.2f}")


if __name__ == "__main__":
    main()
