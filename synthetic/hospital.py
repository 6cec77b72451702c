"""The synthetic hospital: DICOM archive, OMOP CDM extract and ground truth for a seed.

``generate(out, patients, seed)`` writes ``out/archive`` (a PACS-export-like folder tree with dirt),
``out/omop`` (via :func:`synthetic.omop.write_omop`) and ``out/truth`` (the imaging truth tables of
:mod:`synthetic.truth` plus the persons/outcomes tables of the OMOP writer). Same seed, same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from synthetic import dicom_io as io
from synthetic import dirt
from synthetic.anatomy import Anatomy, build_anatomy
from synthetic.ct import (
    KERNELS,
    CTParams,
    blur_and_noise,
    body_composition_truth,
    covered_levels,
    hu_table,
    render_clean,
    thick_from_thin,
    vertebra_truth,
)
from synthetic.ct_dicom import (
    StudyContext,
    axial_datasets,
    dose_sr_dataset,
    localizer_dataset,
    sagittal_datasets,
)
from synthetic.population import Patient, Study, make_population
from synthetic.truth import TruthRows

OPTIONAL_TAGS: tuple[str, ...] = (
    "SliceLocation", "ConvolutionKernel", "KVP", "BodyPartExamined", "PatientSize", "PatientWeight",
    "InstitutionName", "ReconstructionDiameter", "StudyDescription", "WindowCenter", "WindowWidth",
)


@dataclass
class SeriesRecord:
    """One written series: its truth row and its files (relative to the archive)."""

    row: dict
    files: list[str] = field(default_factory=list)


class Archive:
    """Writes series into ``root`` with opaque nested folders; remembers what went where."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.seed = root, seed
        self.series: list[SeriesRecord] = []

    def _h(self, *parts: object) -> str:
        return hashlib.sha1("/".join(map(str, (self.seed, *parts))).encode()).hexdigest()[:8].upper()

    def write_series(self, p: Patient, study: Study, number: int, datasets: list[Dataset], row: dict) -> SeriesRecord:
        folder = f"DICOM/{self._h(p.index)}/{self._h(p.index, study.index)}/{self._h(p.index, study.index, number)}"
        with_ext = int(self._h(p.index, study.index, "ext"), 16) % 2 == 0
        rec = SeriesRecord(row={**row, "folder": folder, "patient_id": p.patient_id,
                                "study_date": study.study_date})
        for k, ds in enumerate(datasets):
            name = f"{ds.SOPInstanceUID.rsplit('.', 1)[-1][-14:]}.dcm" if with_ext else f"IM{k + 1:06d}"
            rec.files.append(f"{folder}/{name}")
        io.write_series(datasets, [self.root / f for f in rec.files])
        rec.row["n_files"] = len(rec.files)
        self.series.append(rec)
        return rec


def _choice(rng: np.random.Generator, values: list, p: list[float]) -> object:
    return values[int(rng.choice(len(values), p=np.asarray(p) / sum(p)))]


# In-plane pixel classes: 0.0 means a 512 matrix over the FOV (0.66-0.98 mm, the clinical norm); the
# others are coarser reconstructions/exports. "clinical" is what abdominal CT archives hold (most series
# 512x512); "archive" is the demo's mix, weighted to coarse pixels to keep ~200 patients near 2 GB
# (a 512x512 study writes ~90 MB, a 2.5 mm-pixel one ~9 MB). See synthetic/README.md.
PIXEL_MIX: dict[str, tuple[list[float], list[float]]] = {
    "clinical": ([0.0, 1.5, 2.0, 2.5, 3.0], [0.70, 0.10, 0.08, 0.07, 0.05]),
    "archive": ([0.0, 1.5, 2.0, 2.5, 3.0], [0.02, 0.05, 0.20, 0.33, 0.40]),
}
THIN_MIX: dict[str, tuple[list[float], list[float]]] = {
    "clinical": ([1.0, 1.25, 2.0, 2.5], [0.15, 0.20, 0.25, 0.40]),
    "archive": ([1.25, 2.0, 2.5], [0.05, 0.15, 0.80]),
}


def sample_ct_study(rng: np.random.Generator, anat: Anatomy, study: Study, small: bool,
                    mix: str = "archive") -> tuple[CTParams, CTParams]:
    """Scanner parameters of the thin and thick axial reconstructions of one CT study.

    ``mix`` picks the pixel/slice mix: ``"archive"`` (the demo hospital, size-limited) or ``"clinical"``
    (most series 512x512, 1-2.5 mm thin slices; used by the accuracy bench).
    """
    if mix not in PIXEL_MIX:
        raise ValueError(f"mix must be one of {sorted(PIXEL_MIX)}, got {mix!r}")
    kvp = int(_choice(rng, [80, 100, 120, 140], [0.1, 0.25, 0.5, 0.15]))  # type: ignore[call-overload]
    contrast = str(_choice(rng, ["none", "arterial", "portal_venous"], [0.45, 0.1, 0.45]))
    trab = {"none": 0.0, "arterial": float(rng.uniform(3, 8)), "portal_venous": float(rng.uniform(10, 25))}[contrast]
    maker = str(_choice(rng, list(KERNELS), [0.3, 0.3, 0.2, 0.2]))
    soft, sharp = KERNELS[maker][int(rng.integers(len(KERNELS[maker])))]
    fov = float(np.clip(round(2 * anat.skin.ax + rng.uniform(10, 60)), 340, 500))
    if small:
        pixel, thin = fov / 48.0, float(_choice(rng, [2.0, 2.5], [0.5, 0.5]))  # type: ignore[arg-type]
    else:
        pixel = float(_choice(rng, *PIXEL_MIX[mix]))  # type: ignore[arg-type]
        pixel = max(pixel, fov / 512.0)
        thin = float(_choice(rng, *THIN_MIX[mix]))  # type: ignore[arg-type]
        if mix == "archive" and pixel <= 1.0:
            thin = 2.5
    thick = float(_choice(rng, [3.0, 4.0, 5.0], [0.1, 0.2, 0.7]))  # type: ignore[arg-type]
    t10 = anat.vertebra("T10")
    z_lo = anat.z_s1 - float(rng.uniform(20, 45))
    z_hi = t10.z_max + float(rng.uniform(2, 14))
    if study.kind == "ct_chest":
        z_hi = t10.z_max + float(rng.uniform(25, 50))
        z_lo = anat.vertebra("L5").z_min - float(rng.uniform(3, 15))
    elif rng.random() < 0.12:  # partial coverage: the scan starts inside T12 (truth lists L1-L5 only)
        z_hi = anat.vertebra("T12").zc + float(rng.uniform(-3, 5))
    store = [(True, -1024.0), (False, -1024.0), (True, 0.0)][int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
    base = CTParams(
        kvp=kvp, contrast=contrast, trab_contrast_hu=trab, fov_mm=fov, pixel_mm=pixel, slice_mm=thin,
        z_start=z_lo, z_end=z_hi, center_x=float(rng.uniform(-10, 10)), center_y=round(anat.skin.cy + rng.uniform(-15, 15)),
        manufacturer=maker, kernel=sharp, sharp=True, noise_sd=float(rng.uniform(14, 25)),
        correlated=bool(rng.random() < 0.5), signed=store[0], intercept=store[1],
    )
    syntaxes = ["explicit", "implicit", "rle"]
    rle_ok = base.matrix <= 200
    thin_p = replace(base, syntax=str(_choice(rng, syntaxes, [0.84, 0.16, 0.0])))
    thick_p = replace(base, slice_mm=thick, kernel=soft, sharp=False, noise_sd=float(rng.uniform(10, 16)),
                      correlated=bool(rng.random() < 0.5),
                      syntax=str(_choice(rng, syntaxes, [0.76, 0.14, 0.1 if rle_ok else 0.0])))
    if rng.random() < 0.1:
        thin_p = replace(thin_p, drop_tags=tuple(rng.choice(OPTIONAL_TAGS, size=3, replace=False).tolist()))
    return thin_p, thick_p


def write_ct_study(arc: Archive, truth: TruthRows, seed: int, p: Patient, anat: Anatomy, study: Study,
                   small: bool, tilt_deg: float = 0.0) -> list[SeriesRecord]:
    """Localizer, thin and thick axial series, sagittal reformat and dose SR of one CT study."""
    rng = np.random.default_rng([seed, p.index, study.index, 0xC1])
    thin_p, thick_p = sample_ct_study(rng, anat, study, small)
    if tilt_deg:
        thin_p, thick_p = replace(thin_p, tilt_deg=tilt_deg), replace(thick_p, tilt_deg=tilt_deg)
    desc = "CT CHEST ABDOMEN" if study.kind == "ct_chest" else "CT ABDOMEN PELVIS"
    ctx = StudyContext.make(seed, p, study, desc)
    table = hu_table(p, study.study_date, thin_p.kvp, thin_p.contrast, thin_p.trab_contrast_hu)
    zs = thin_p.positions()
    clean = render_clean(anat, table, thin_p, zs)
    noise_rng = np.random.default_rng([seed, p.index, study.index, 0x5E])
    thin_img = blur_and_noise(clean, thin_p, noise_rng)
    z_thick = thick_p.positions()
    z_thick = z_thick[z_thick >= zs.min() - 1e-6]
    thick_img = blur_and_noise(thick_from_thin(clean, zs, z_thick, thick_p.slice_mm), thick_p, noise_rng)
    common = {"study_instance_uid": ctx.study_uid, "modality": "CT", "kvp": thin_p.kvp,
              "contrast_phase": thin_p.contrast, "manufacturer": thin_p.manufacturer}
    out = []
    loc, uid_loc = localizer_dataset(ctx, thin_p, clean, zs, number=1)
    out.append(arc.write_series(p, study, 1, [loc], {**common, "series_instance_uid": uid_loc,
               "kind": "ct_localizer", "pixel_mm": thin_p.spacing, "slice_mm": None, "kernel": None}))
    levels = covered_levels(anat, float(zs.min()), float(zs.max()))
    for number, prm, img, zz, kind, tag in ((2, thin_p, thin_img, zs, "ct_axial_thin", "thin"),
                                            (3, thick_p, thick_img, z_thick, "ct_axial_thick", "thick")):
        dss, suid = axial_datasets(p, study.study_date, prm, img, zz, seed=seed, tag=tag, ctx=ctx, number=number)
        rec = arc.write_series(p, study, number, dss, {**common, "series_instance_uid": suid, "kind": kind,
                               "pixel_mm": prm.spacing, "slice_mm": prm.slice_mm, "kernel": prm.kernel})
        rec.row["_params"] = prm
        out.append(rec)
        for r in vertebra_truth(p, anat, study.study_date, prm, [lv for lv in levels]):
            truth.add("vertebrae", {**r, "series_instance_uid": suid})
        for lv in ("L1", "L3"):
            if lv in levels:
                truth.add("body_composition", {**body_composition_truth(p, anat, prm, lv), "series_instance_uid": suid})
    sag, uid_sag = sagittal_datasets(ctx, thin_p, thin_img, zs, number=601)
    out.append(arc.write_series(p, study, 601, sag, {**common, "series_instance_uid": uid_sag,
               "kind": "ct_sagittal", "pixel_mm": thin_p.spacing, "slice_mm": thin_p.spacing,
               "kernel": thin_p.kernel}))
    sr, uid_sr = dose_sr_dataset(ctx, thin_p, float(zs.max() - zs.min()), number=999)
    out.append(arc.write_series(p, study, 999, [sr], {**common, "series_instance_uid": uid_sr,
               "modality": "SR", "kind": "ct_dose_sr", "pixel_mm": None, "slice_mm": None, "kernel": None}))
    return out


def generate(
    out: Path, patients: int, seed: int, *, small: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write the synthetic hospital for ``patients`` patients and ``seed`` into ``out``.

    Parameters
    ----------
    out
        Output folder; ``archive/``, ``omop/`` and ``truth/`` are created inside.
    patients
        Number of latent patients (:func:`synthetic.population.make_population`).
    seed
        Seed of everything: same seed, same bytes.
    small
        Small matrices (about 48x48 CT, coarse radiographs): a header-heavy archive for ingest benches.
    progress
        Called with (patients done, patients) after each patient.

    Returns
    -------
    dict
        Counts: ``patients``, ``files``, ``series``, ``dirty_files`` and the row count of every truth table.
    """
    from synthetic import mr, projection
    from synthetic.omop import write_omop

    out = Path(out)
    archive = out / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    pop = make_population(patients, seed)
    arc = Archive(archive, seed)
    truth = TruthRows()
    plan = dirt.DirtPlan()
    for i, p in enumerate(pop):
        anat = build_anatomy(p) if p.studies else None
        for study in p.studies:
            assert anat is not None
            if study.kind in ("ct_abdomen", "ct_chest"):
                tilt = plan.next_tilt()
                write_ct_study(arc, truth, seed, p, anat, study, small, tilt_deg=tilt)
                if tilt:
                    plan.record_tilt(arc.series[-3], tilt)  # the thick axial series
            elif study.kind == "dx_spine":
                projection.write_dx_study(arc, truth, seed, p, anat, study, small)
            elif study.kind == "dxa":
                projection.write_dxa_study(arc, truth, seed, p, anat, study, small)
            elif study.kind == "mr":
                mr.write_mr_study(arc, truth, seed, p, anat, study, small)
        if progress is not None:
            progress(i + 1, len(pop))
    plan.apply(arc, truth, seed)
    for rec in arc.series:
        rec.row.pop("_params", None)
        truth.add("series", rec.row)
    counts = truth.write(out / "truth")
    omop_counts = write_omop(pop, out / "omop", out / "truth")
    n_files = sum(1 for f in archive.rglob("*") if f.is_file())
    return {"patients": len(pop), "files": n_files, "series": len(arc.series),
            **{f"truth_{k}": v for k, v in counts.items()}, **{f"omop_{k}": v for k, v in omop_counts.items()}}
