"""Writes ``docs/images/qc_example.png`` (the README's QC picture) and prints the numbers quoted next to it.

The series is the first thin, 120 kVp, portal-venous series of the CT accuracy bench's hospital (seed 11),
so the picture and the numbers can be remade after any change to the extractor or the figure:

    PYTHONPATH=. .venv/bin/python docs/qc_example.py
"""

from __future__ import annotations

from pathlib import Path

from bench.ct_accuracy import ct_cases, synthetic_case
from tasks.biomarkers.extract import measure_volume

OUT = Path(__file__).resolve().parent / "images" / "qc_example.png"


def main() -> None:
    for p, s, thick in ct_cases(40, seed=11):
        case = synthetic_case(p, s, 11, thick=thick, mix="clinical")
        prm = case.params
        if thick or prm.kvp != 120 or prm.contrast != "portal_venous":
            continue
        res = measure_volume(case.volume)
        if res.qc_png is None or "L1" not in res.trabecular or "L3" not in res.body:
            continue
        OUT.write_bytes(res.qc_png)
        l1 = next(r for r in case.vertebrae if r["level"] == "L1")
        l3 = next(b for b in case.body if b["level"] == "L3")
        got = res.body["L3"]
        levels_ok = all(any(v.level == r["level"] and abs(v.z_mm - r["z_mm"]) <= 10 for v in res.vertebrae)
                        for r in case.vertebrae)
        print(f"wrote {OUT}")
        print(f"series: {prm.kvp} kVp, {prm.contrast}, {prm.spacing:.2f} mm pixels, {prm.slice_mm} mm slices")
        print(f"L1 {res.trabecular['L1'].hu_mean:.1f} HU (true {l1['trabecular_hu']:.1f}); "
              f"every level in place: {levels_ok}")
        print(f"L3 muscle {got.muscle_area_cm2:.1f} (true {l3['muscle_area_cm2']:.1f}) cm2, "
              f"VAT {got.vat_area_cm2:.1f} ({l3['vat_area_cm2']:.1f}), SAT {got.sat_area_cm2:.1f} "
              f"({l3['sat_area_cm2']:.1f}); flags {res.flags}")
        return
    raise SystemExit("no thin 120 kVp portal-venous series among the first 40")


if __name__ == "__main__":
    main()
