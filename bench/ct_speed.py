"""Speed of ``extract_ct_series`` against simply reading the series' pixel data with pydicom.

A 512x512x~120 axial series (synthetic, 2.5 mm, T10-S1) is written to a temporary folder; the baseline
is ``pydicom.dcmread(f).pixel_array`` over every file, measured in the same run (best of 7 for all, the
measurements interleaved round by round so that load from other processes affects them alike).
Three extractions are timed: everything ``extract_ct_series`` does by default (density, body composition,
vertebral heights and Genant grades from ``assess_ct``, trabecular texture, QC figure), the CT biomarkers
without the fracture assessment, and the core biomarkers alone (no fracture, texture or QC); plus the
volume load alone. Each is timed both as wall-clock time and as CPU time of this process
(``time.process_time``, the fairer measure on a shared machine), best of the rounds for each.
Ends with ``ct_speed: baseline_s=... extract_s=... ratio=... ratio_no_fracture=... ratio_core=...
ratio_load=... baseline_cpu_s=... extract_cpu_s=... cpu_ratio=... cpu_ratio_no_fracture=... cpu_ratio_core=...
cpu_ratio_load=...`` (target ratio <= 3).

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


def baseline(paths: list[Path]) -> None:
    for f in paths:
        _ = pydicom.dcmread(f).pixel_array


def _interleaved(fns: dict[str, Callable[[], object]], n: int = 7) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall time and best CPU time (``time.process_time``) of each function over ``n`` rounds; every
    round runs each function once, in turn, so that a burst of load from other processes on a shared
    machine hits all of them alike."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            c1, t1 = time.process_time(), time.perf_counter()
            wall[k].append(t1 - t0)
            cpu[k].append(c1 - c0)
    return {k: min(v) for k, v in wall.items()}, {k: min(v) for k, v in cpu.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_series(folder)
        res = extract_ct_series(folder)
        t, c = _interleaved({
            "baseline": lambda: baseline(paths),
            "load": lambda: load_best_ct_volume(folder),
            "core": lambda: extract_ct_series(folder, with_fracture=False, with_texture=False, with_qc=False),
            "no_frac": lambda: extract_ct_series(folder, with_fracture=False),
            "full": lambda: extract_ct_series(folder),
        })
        base, load, core, no_frac, ext = t["baseline"], t["load"], t["core"], t["no_frac"], t["full"]
        shape = res.volume.shape if res.volume else None
        print(f"series {shape}, levels {[v.level for v in res.vertebrae]}")
        print(f"  baseline (pydicom pixel_array) {base:.3f} s; load {load:.3f} s; core {core:.3f} s; "
              f"no fracture {no_frac:.3f} s; full {ext:.3f} s (assess_ct ~{ext - no_frac:.3f} s)")
        cb = c["baseline"]
        print(f"  CPU: baseline {cb:.3f} s; load {c['load']:.3f} s; core {c['core']:.3f} s; "
              f"no fracture {c['no_frac']:.3f} s; full {c['full']:.3f} s")
        print(f"ct_speed: n_files={len(paths)} baseline_s={base:.3f} extract_s={ext:.3f} ratio={ext / base:.2f} "
              f"ratio_no_fracture={no_frac / base:.2f} ratio_core={core / base:.2f} ratio_load={load / base:.2f} "
              f"baseline_cpu_s={cb:.3f} extract_cpu_s={c['full']:.3f} cpu_ratio={c['full'] / cb:.2f} "
              f"cpu_ratio_no_fracture={c['no_frac'] / cb:.2f} cpu_ratio_core={c['core'] / cb:.2f} "
              f"cpu_ratio_load={c['load'] / cb:.2f}")


if __name__ == "__main__":
    main()
