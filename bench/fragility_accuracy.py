"""Accuracy of the latent-fragility extractors against synthetic ground truth.

Two sources of truth:

- phantoms rendered here with :mod:`synthetic.ct` / :mod:`synthetic.femur` / :mod:`synthetic.projection`
  (CT of the spine region, lateral radiographs, DXA hip and spine images), with
  the labeller's job done from the truth centres moved by a typical labeller error (4 mm along the spine,
  12 mm posterior) so that the measurement itself is judged;
- optionally a synthetic hospital archive (``--archive DIR`` written by ``osteolake synth``), run through the
  whole path (DICOM -> volume -> ``find_vertebrae`` -> ``assess_ct``; ``extract_projection_series``) and
  compared with ``DIR/truth``.

Prints the targets (Genant exact agreement, sensitivity/specificity for grade >= 2, heights within 1.5 mm
or 7%, hip geometry within 3%, texture AUC) with their counts: a true grade >= 2 fracture at a level that
got no grade is a false negative (``pos_missing``), and ungraded levels are counted apart (``missing``) and the time of the measurement relative to the labeller's, and
ends with one line ``fragility_accuracy: key=value ...``. CT is measured on thin (2.5 mm) and thick (5 mm)
phantoms of the same patients (``--seed``), and again on held-out population seeds (``--ct-heldout-seeds``,
``ct_ho_*`` / ``ct5_ho_*``) that were not used to tune the measurement. ``ct5_best_*`` / ``ct5_ho_best_*``
are what 5 mm slices can show at best (:func:`cortex_only_bound`): where a body's bone is as dense as its
disc (``ct5_bone_as_disc``, the share of such bodies) a slice says only which slice holds an endplate's cortex.
``ct_hosp_*`` is the whole CT path (labeller included) on the hospital's own thin series of fractured
patients (``--ct-hospital-seeds``; :func:`bench_ct_hospital`).

    .venv/bin/python bench/fragility_accuracy.py --patients 12 [--archive DIR]
    .venv/bin/python bench/fragility_accuracy.py --ct-only --ct-heldout-seeds 53 59 61 67 --ct-heldout-per-seed 10

``--ct-only`` skips the radiograph, hip and texture parts (and prints only the CT fields).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench.ct_accuracy is imported from the checkout
    sys.path.insert(0, str(ROOT))

from synthetic import ct as C  # noqa: E402
from synthetic.anatomy import Anatomy, build_anatomy  # noqa: E402
from synthetic.population import LEVELS, Patient, make_population  # noqa: E402
from tasks.biomarkers.spine import VertebraLabel  # noqa: E402
from tasks.dicom.volume import Volume  # noqa: E402


def spine_ct_setup(p: Patient, slice_mm: float, pixel_mm: float, fov_mm: float = 128.0,
                   levels: tuple[str, str] | None = None) -> tuple[Anatomy, C.CTParams, np.ndarray]:
    """Anatomy, scanner parameters and HU table (by tissue label) of :func:`render_spine_ct`'s phantom."""
    anat = build_anatomy(p)
    l3 = anat.vertebra("L3")
    n = int(round(fov_mm / pixel_mm))
    kw: dict[str, Any] = {}
    if levels is not None:
        kw = {"z_end": anat.vertebra(levels[0]).z_max + 12.0, "z_start": anat.vertebra(levels[1]).z_min - 12.0}
    params = C.default_params(anat, fov_mm=n * pixel_mm, pixel_mm=pixel_mm, slice_mm=slice_mm, center_x=0.0,
                              center_y=float(l3.yc + 15.0), **kw)
    return anat, params, C.hu_table(p, p.baseline, params.kvp, params.contrast, params.trab_contrast_hu)


def render_spine_ct(p: Patient, slice_mm: float = 2.5, pixel_mm: float = 0.78, seed: int = 1,
                    fov_mm: float = 128.0, levels: tuple[str, str] | None = None,
                    ) -> tuple[Anatomy, Volume, dict[str, dict[str, Any]]]:
    """CT of the spine region of ``p`` rendered by ``synthetic.ct`` (partial volume over each voxel).

    ``levels`` = (top, bottom) limits the slices to those levels (+/- 12 mm). Returns the anatomy, the
    canonical :class:`Volume` and the truth rows (``synthetic.ct.vertebra_truth``) by level.
    """
    anat, params, table = spine_ct_setup(p, slice_mm, pixel_mm, fov_mm, levels)
    zs = params.positions()[::-1]
    img = C.blur_and_noise(C.render_clean(anat, table, params, zs), params, np.random.default_rng([seed, p.index]))
    x, y = C.grid(params)
    vol = Volume(hu=img.astype(np.float32), spacing_mm=(slice_mm, params.spacing, params.spacing),
                 origin_mm=(float(x[0]), float(y[0]), float(zs[0])), slice_z_mm=zs, series_instance_uid=f"ph.{p.index}")
    covered = C.covered_levels(anat, float(zs.min()), float(zs.max()))
    truth = {r["level"]: r for r in C.vertebra_truth(p, anat, p.baseline, params, covered)}
    return anat, vol, truth


def labels_from_truth(anat: Anatomy, vol: Volume, dz: float = 4.0, dy: float = 12.0) -> list[VertebraLabel]:
    """Labeller output made from the truth centres, moved by ``dz`` (cranially) and ``dy`` (posteriorly)."""
    out = []
    for v in anat.vertebrae:
        if not (vol.slice_z_mm[0] < v.zc < vol.slice_z_mm[-1]):
            continue
        k = float(np.interp(v.zc + dz, vol.slice_z_mm, np.arange(len(vol.slice_z_mm))))
        i = (v.yc + dy - vol.origin_mm[1]) / vol.spacing_mm[1]
        j = (0.0 - vol.origin_mm[0]) / vol.spacing_mm[2]
        out.append(VertebraLabel(v.level, (k, i, j), (0.0, v.yc + dy, v.zc + dz), (int(k) - 2, int(k) + 2),
                                 (0, 0, 0, 0, 0, 0), None, 15.0, confidence=1.0))
    return sorted(out, key=lambda lab: -lab.centre_mm[2])


@dataclass
class Score:
    """Agreement of measured with true vertebrae.

    Every true level is counted once. A level that got no grade is ``missing``; when it is truly a
    fracture of grade >= 2 it is also a false negative (``fn_missing``), so the sensitivity is that of the
    whole pipeline, not only of the levels that happened to be measured. ``exact`` and the heights are over
    the graded levels (``exact_all`` counts a missing level as a disagreement).
    """

    n: int = 0
    missing: int = 0
    exact: int = 0
    tp: int = 0
    fn: int = 0
    fn_missing: int = 0
    fp: int = 0
    tn: int = 0
    heights_ok: int = 0
    heights_n: int = 0

    def add(self, got: Any, true: dict[str, Any]) -> None:
        t = int(true["genant_grade"])
        if got is None or got.genant_grade is None:
            self.missing += 1
            self.fn_missing += t >= 2
            return
        self.n += 1
        g = int(got.genant_grade)
        self.exact += g == t
        self.tp += g >= 2 and t >= 2
        self.fn += g < 2 <= t
        self.fp += g >= 2 > t
        self.tn += g < 2 and t < 2
        for k in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm"):
            m, tv = getattr(got, k), float(true[k])
            self.heights_n += 1
            self.heights_ok += m is not None and (abs(m - tv) <= 1.5 or abs(m - tv) <= 0.07 * tv)

    def summary(self) -> dict[str, float]:
        n_pos = self.tp + self.fn + self.fn_missing
        return {
            "n": self.n, "missing": self.missing, "exact": self.exact / max(self.n, 1),
            "exact_all": self.exact / max(self.n + self.missing, 1),
            "sens": self.tp / max(n_pos, 1), "tp": self.tp, "n_pos": n_pos, "pos_missing": self.fn_missing,
            "spec": self.tn / max(self.tn + self.fp, 1), "tn": self.tn, "n_neg_graded": self.tn + self.fp,
            "heights": self.heights_ok / max(self.heights_n, 1),
        }


#: Trabecular bone within this many HU of the disc leaves an endplate's place inside a thick slice to its cortex
#: alone (:func:`cortex_only_bound`).
BONE_DISC_CONTRAST_HU = 20.0


def bench_ct(patients: list[Patient], slice_mm: float, pixel_mm: float) -> tuple[dict[str, float], float]:
    from tasks.biomarkers.spine import find_vertebrae
    from tasks.biomarkers.vertebral_fracture import assess_ct

    sc = Score()
    t_assess = t_label = 0.0
    for p in patients:
        anat, vol, truth = render_spine_ct(p, slice_mm, pixel_mm)
        t0 = time.perf_counter()
        find_vertebrae(vol)  # baseline: the labeller's time on the same volume
        t1 = time.perf_counter()
        res = {a.level: a for a in assess_ct(vol, labels_from_truth(anat, vol))}
        t2 = time.perf_counter()
        t_label += t1 - t0
        t_assess += t2 - t1
        for level, tr in truth.items():
            sc.add(res.get(level), tr)
    return sc.summary(), t_assess / max(t_label, 1e-9)


def _place(edges: np.ndarray, surface: float, inward: float, cortex_mm: float) -> float:
    """Where an endplate's outer ``surface`` is placed from the slices (boundaries ``edges``) its cortex
    lies in, the cortex on the ``inward`` side (-1 below, +1 above): exactly where it spans two slices,
    else the middle of the places it can be inside its slice."""
    lo, hi = sorted([surface, surface + inward * cortex_mm])
    k = int(np.searchsorted(edges, lo, side="right")) - 1
    if not 0 <= k < len(edges) - 1 or hi > edges[k + 1] + 1e-9:
        return surface
    return float(0.5 * (edges[k] + edges[k + 1]) - 0.5 * inward * cortex_mm)


def cortex_only_bound(patients: list[Patient], slice_mm: float, pixel_mm: float,
                      contrast_hu: float = BONE_DISC_CONTRAST_HU) -> dict[str, float]:
    """The best any measurement can do on these phantoms' slices when a body's bone is as dense as the disc.

    A slice is the mean over its thickness (a box), so where trabecular bone and disc differ by less than
    ``contrast_hu`` only the 1.2 mm endplate cortex shows where an endplate is: a cortex inside one slice
    is known to lie somewhere in it (the estimate here: the middle of the places it can be), one across two
    slices is placed exactly (its mass known). Bodies with more contrast than that are given their true
    heights (the image does say where their endplates are). Noise-free and with the truth's cortex, so an
    upper bound; the grades come from :func:`tasks.biomarkers.genant.grade_vertebrae` as the measurement's
    do. Returns :meth:`Score.summary` plus ``bone_as_disc``, the share of bodies without that contrast.
    """
    from synthetic.anatomy import ALL_LEVELS, CORTEX_MM, DISC, TRAB0
    from tasks.biomarkers.genant import VertebralHeights, grade_vertebrae
    from tasks.biomarkers.vertebral_fracture import VertebraAssessment

    sc = Score()
    flat = bodies = 0
    for p in patients:
        anat, params, table = spine_ct_setup(p, slice_mm, pixel_mm)
        zs = np.sort(params.positions())
        edges = np.concatenate([zs - slice_mm / 2.0, [zs[-1] + slice_mm / 2.0]])
        truth = {r["level"]: r for r in C.vertebra_truth(p, anat, p.baseline, params,
                                                         C.covered_levels(anat, float(zs[0]), float(zs[-1])))}
        heights = []
        for level in truth:
            v = anat.vertebra(level)
            u = np.array([-1.0, 0.0, 1.0])
            top, bottom = v.top(u), v.bottom(u)
            bodies += 1
            if abs(float(table[TRAB0 + ALL_LEVELS.index(level)]) - float(table[DISC])) < contrast_hu:
                flat += 1
                h = [_place(edges, t, -1.0, CORTEX_MM) - _place(edges, b, 1.0, CORTEX_MM) for t, b in zip(top, bottom, strict=True)]
            else:
                h = list(top - bottom)
            heights.append(VertebralHeights(level, float(h[0]), float(h[1]), float(h[2])))
        for g in grade_vertebrae(heights):
            sc.add(VertebraAssessment.from_result(g, None, []), truth[g.level])
    return sc.summary() | {"bone_as_disc": flat / max(bodies, 1)}


def bench_ct_hospital(seeds: tuple[int, ...], per_seed: int) -> dict[str, float]:
    """The whole CT path on the hospital's own CT series: for the first ``per_seed`` patients of each
    population seed with a prevalent fracture and a CT study, that study's thin axial series
    as the synthetic hospital samples it (scanner, kernel, contrast phase, noise, pixels 0.66-3 mm, slices,
    coverage: ``bench.ct_accuracy.synthetic_case``, the "clinical" mix), labelled by
    :func:`tasks.biomarkers.spine.find_vertebrae` and measured by ``assess_ct``. The first run renders the
    series (about 5 s and 70 MB each, cached under ``.bench/ct_accuracy``: about 3 GB for 4 x 10); later runs
    take about 40 s."""
    from bench.ct_accuracy import synthetic_case
    from synthetic.population import make_patient
    from tasks.biomarkers.spine import find_vertebrae
    from tasks.biomarkers.vertebral_fracture import assess_ct

    sc = Score()
    for seed in seeds:
        taken = i = 0
        while taken < per_seed and i < 400 * per_seed:
            p = make_patient(seed, i)
            i += 1
            cts = [st for st in p.studies if st.kind in ("ct_abdomen", "ct_chest")]
            if not p.fractures or not cts:
                continue
            taken += 1
            case = synthetic_case(p, cts[0], seed, mix="clinical")
            got = {a.level: a for a in assess_ct(case.volume, find_vertebrae(case.volume))}
            for tr in case.vertebrae:
                sc.add(got.get(tr["level"]), tr)
    return sc.summary()


def render_lateral(p: Patient, pix: float = 1.0, seed: int = 0) -> tuple[Anatomy, np.ndarray, np.ndarray]:
    """Lateral spine radiograph exactly as ``synthetic.projection.write_dx_study`` renders it (stored values,
    rows head first) and the patient z of each row."""
    from synthetic.projection import lateral_radiograph

    anat = build_anatomy(p)
    img, zs, _ = lateral_radiograph(p, anat, p.baseline, pix, np.random.default_rng([seed, p.index]))
    return anat, img, zs


def bench_dx(patients: list[Patient], pix: float) -> dict[str, float]:
    from tasks.biomarkers.projection import assess_lateral_spine

    sc = Score()
    for p in patients:
        anat, img, zs = render_lateral(p, pix)
        res = {a.level: a for a in assess_lateral_spine(img, pix)[0]}
        for level in LEVELS:
            v = anat.vertebra(level)
            if v.z_max > zs[0] or v.z_min < zs[-1]:
                continue
            ha, hm, hp = v.heights()
            sc.add(res.get(level), {"genant_grade": v.grade, "height_anterior_mm": ha, "height_middle_mm": hm,
                                    "height_posterior_mm": hp})
    return sc.summary()


def bench_hip(patients: list[Patient], pix: float = 0.5) -> dict[str, float]:
    from synthetic.femur import femur_for, render_hip
    from tasks.biomarkers.hip_geometry import measure_hip

    worst = {"fnw": 0.0, "hal": 0.0, "nsa": 0.0}
    ok = 0
    for p in patients:
        f = femur_for(p)
        img, _ = render_hip(f, p, p.baseline, pix)
        img = img + np.random.default_rng(p.index).normal(0.0, 8.0, img.shape)
        h = measure_hip(img, pix)[0]
        t = f.truth()
        errs = {
            "fnw": abs(h.femoral_neck_width_mm / t["femoral_neck_width_mm"] - 1) if h.femoral_neck_width_mm else 1.0,
            "hal": abs(h.hip_axis_length_mm / t["hip_axis_length_mm"] - 1) if h.hip_axis_length_mm else 1.0,
            "nsa": abs(h.neck_shaft_angle_deg / t["neck_shaft_angle_deg"] - 1) if h.neck_shaft_angle_deg else 1.0,
        }
        ok += all(e <= 0.03 for e in errs.values())
        worst = {k: max(worst[k], errs[k]) for k in worst}
    return {"within3pct": ok / max(len(patients), 1), **{f"max_{k}_pct": 100 * v for k, v in worst.items()}}


def render_dxa_spine(p: Patient, degraded: bool, pix: float = 0.5, seed: int = 0) -> np.ndarray:
    """AP DXA spine image like ``synthetic.projection.write_dxa_study`` with a chosen microarchitecture."""
    from synthetic.projection import HURST_DEGRADED, HURST_NORMAL, fbm_texture, spine_abmd

    anat = build_anatomy(p)
    rng = np.random.default_rng([seed, p.index, 7])
    x = np.arange(-60.0, 60.0, pix) + pix / 2
    l1, l4 = anat.vertebra("L1"), anat.vertebra("L4")
    zs = (l1.z_max + 35.0) - pix * np.arange(int((l1.z_max - l4.z_min + 70.0) / pix))
    hurst = float(rng.uniform(*HURST_DEGRADED) if degraded else rng.uniform(*HURST_NORMAL))
    tex = fbm_texture(rng, (len(zs), len(x)), hurst)
    img, _ = spine_abmd(anat, p, p.baseline, x, zs, tex, 0.12)
    return np.clip(np.rint(img + rng.normal(0.0, 4.0, img.shape)), 0, 65535)


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    a = np.asarray(pos)[:, None]
    b = np.asarray(neg)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def bench_texture(patients: list[Patient], pix: float = 0.5) -> dict[str, float]:
    from tasks.biomarkers.projection import dxa_spine_tbs

    normal: list[float] = []
    degraded: list[float] = []
    for i, p in enumerate(patients):
        deg = i % 2 == 1
        v, _, _ = dxa_spine_tbs(render_dxa_spine(p, deg, pix), pix)
        (degraded if deg else normal).append(float(v) if v is not None else float("nan"))
    return {"auc": auc(normal, degraded), "n": len(patients)}


def fracture_enriched(seeds: tuple[int, ...], per_seed: int) -> list[Patient]:
    """Patients with a prevalent fracture from several population seeds (``per_seed`` from each)."""
    out: list[Patient] = []
    for seed in seeds:
        out += [p for p in make_population(40 * per_seed, seed) if p.fractures][:per_seed]
    return out


def bench_archive(root: Path) -> dict[str, Any]:
    """Whole path on a synthetic hospital archive: CT axial and DX series against DIR/truth.
    """
    import polars as pl

    from tasks.biomarkers.projection import extract_projection_series
    from tasks.biomarkers.spine import find_vertebrae
    from tasks.biomarkers.vertebral_fracture import assess_ct
    from tasks.dicom.volume import load_best_ct_volume

    series = pl.read_parquet(root / "truth" / "series.parquet")
    vt = pl.read_parquet(root / "truth" / "vertebrae.parquet")
    out: dict[str, Any] = {}
    for kinds, name in ((("ct_axial_thin",), "ct_thin"), (("ct_axial_thick",), "ct_thick"),
                        (("dx_lateral_spine",), "dx")):
        sc = Score()
        failed = 0
        for row in series.filter(pl.col("kind").is_in(list(kinds))).iter_rows(named=True):
            folder = root / "archive" / row["folder"]
            truth = {r["level"]: r for r in vt.filter(pl.col("series_instance_uid") == row["series_instance_uid"])
                     .iter_rows(named=True)}
            try:
                if name == "dx":
                    got = {a.level: a for a in extract_projection_series(folder).vertebrae}
                else:
                    vol, _ = load_best_ct_volume(folder)
                    got = {a.level: a for a in assess_ct(vol, find_vertebrae(vol))}
            except Exception as e:  # noqa: BLE001 - a bench counts failures, it does not stop
                failed += 1
                print(f"  {name} {row['series_instance_uid']}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            for level, tr in truth.items():
                sc.add(got.get(level), tr)
        out[name] = {**sc.summary(), "failed": failed}
    return out


def _fields(fields: dict[str, float], scores: list[tuple[str, dict[str, float]]]) -> None:
    for name, sc in scores:
        for m in ("exact", "sens", "spec", "heights", "tp", "n_pos", "pos_missing", "missing", "n"):
            fields[f"{name}_{m}"] = sc[m]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=10, help="patients with a prevalent fracture per modality")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--archive", type=Path, default=None, help="synthetic hospital folder (osteolake synth)")
    ap.add_argument("--dx-seeds", type=int, nargs="+", default=[7, 11, 23, 31, 43],
                    help="population seeds of the fracture-enriched radiograph sample (sensitivity)")
    ap.add_argument("--ct-heldout-seeds", type=int, nargs="*", default=[23, 31],
                    help="population seeds of the held-out CT phantoms (thin and thick; none: skipped)")
    ap.add_argument("--ct-heldout-per-seed", type=int, default=8,
                    help="fractured patients per held-out CT seed")
    ap.add_argument("--ct-hospital-seeds", type=int, nargs="*", default=[89, 97, 101, 103],
                    help="population seeds of the whole-path CT sample (the hospital's series; none: skipped)")
    ap.add_argument("--ct-hospital-per-seed", type=int, default=10, help="fractured patients per whole-path seed")
    ap.add_argument("--ct-only", action="store_true", help="only the CT phantoms (no radiographs, hip, texture)")
    args = ap.parse_args(argv)
    pop = make_population(40 * args.patients, args.seed)
    frac = [p for p in pop if p.fractures][: args.patients]
    anyone = pop[: max(2 * args.patients, 10)]
    ct, ratio = bench_ct(frac, 2.5, 0.78)
    ct5, _ = bench_ct(frac, 5.0, 1.5)
    held = fracture_enriched(tuple(args.ct_heldout_seeds), args.ct_heldout_per_seed) if args.ct_heldout_seeds else []
    ct_ho = bench_ct(held, 2.5, 0.78)[0] if held else None
    ct5_ho = bench_ct(held, 5.0, 1.5)[0] if held else None
    # what 5 mm slices can show at best (bone as dense as disc: only the endplate cortex places an endplate)
    ideal5 = cortex_only_bound(frac, 5.0, 1.5)
    ideal5_ho = cortex_only_bound(held, 5.0, 1.5) if held else None
    print(f"CT 2.5 mm / 0.78 mm (seed {args.seed}, {len(frac)} fractured patients): {ct}")
    print(f"CT 5 mm / 1.5 mm    (seed {args.seed}, {len(frac)} fractured patients): {ct5}")
    print(f"CT 5 mm at best     (the same, cortex only where bone is as dense as disc): {ideal5}")
    if held:
        print(f"CT 2.5 mm held out (seeds {args.ct_heldout_seeds} x {args.ct_heldout_per_seed}): {ct_ho}")
        print(f"CT 5 mm held out   (seeds {args.ct_heldout_seeds} x {args.ct_heldout_per_seed}): {ct5_ho}")
        print(f"CT 5 mm held out at best: {ideal5_ho}")
    hosp = bench_ct_hospital(tuple(args.ct_hospital_seeds), args.ct_hospital_per_seed) \
        if args.ct_hospital_seeds else None
    if hosp is not None:
        print(f"CT whole path, the hospital's thin series (seeds {args.ct_hospital_seeds} x "
              f"{args.ct_hospital_per_seed}, labeller included): {hosp}")
    fields: dict[str, float] = {"ct5_bone_as_disc": ideal5["bone_as_disc"]}
    scores = [("ct", ct), ("ct5", ct5), ("ct5_best", ideal5)] + ([("ct_hosp", hosp)] if hosp is not None else [])
    if ct_ho is not None and ct5_ho is not None and ideal5_ho is not None:
        scores += [("ct_ho", ct_ho), ("ct5_ho", ct5_ho), ("ct5_ho_best", ideal5_ho)]
    if args.ct_only:
        _fields(fields, scores)
        fields["assess_vs_label_time"] = ratio
        print("fragility_accuracy: " + " ".join(f"{k}={v:.3f}" for k, v in fields.items()))
        return 0
    dx = bench_dx(frac, 1.0)
    dx_enriched = bench_dx(fracture_enriched(tuple(args.dx_seeds), 10), 1.0)
    hip = bench_hip(anyone)
    tex = bench_texture(anyone)
    print(f"DX 1.0 mm:           {dx}")
    print(f"DX enriched (seeds {args.dx_seeds} x 10 fractured patients): {dx_enriched}")
    print(f"hip (DXA 0.5 mm):    {hip}")
    print(f"texture (DXA spine): {tex}")
    arch: dict[str, Any] = {}
    if args.archive is not None:
        arch = bench_archive(args.archive)
        for k, v in arch.items():
            print(f"archive {k}: {v}")
    _fields(fields, [*scores, ("dx", dx), ("dxe", dx_enriched)])
    fields.update({"hip_within3pct": hip["within3pct"], "tbs_auc": tex["auc"], "assess_vs_label_time": ratio})
    for k, v in arch.items():
        for m in ("n", "missing", "exact", "sens", "tp", "n_pos", "pos_missing", "spec", "heights", "failed"):
            fields[f"archive_{k}_{m}"] = v[m]
    print("fragility_accuracy: " + " ".join(f"{k}={v:.3f}" for k, v in fields.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
