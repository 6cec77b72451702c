"""Dirt of a real archive, planted deterministically and listed in ``truth/dirty_files.parquet``.

Defects (``defect`` column): ``non_dicom`` (README.txt, Thumbs.db), ``zero_byte``, ``truncated`` (a file
cut to 40% of its bytes, in place, inside its series), ``duplicate_sop_instance_uid`` (a byte copy of an
instance in another folder; ``detail`` names the original), ``missing_slice`` (one middle file of a thin
axial series deleted: inconsistent slice spacing; ``path`` is the series folder), ``gantry_tilt``
(GantryDetectorTilt set and ImagePositionPatient sheared along y; ``path`` is the series folder) and
``missing_optional_tags`` (``path`` is the series folder, ``detail`` lists the removed keywords).
The pattern repeats every :data:`PERIOD` CT studies, so every archive with at least two CT studies has
every defect.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pydicom

from synthetic.truth import TruthRows

if TYPE_CHECKING:
    from synthetic.hospital import Archive, SeriesRecord

PERIOD = 25
TILT_DEG = (15.0, 17.5, 20.0)


class DirtPlan:
    """Decides which CT studies get a gantry tilt, then plants the file-level dirt after writing."""

    def __init__(self) -> None:
        self.n_ct = 0
        self.tilted: list[tuple[str, float]] = []

    def next_tilt(self) -> float:
        """Gantry tilt (degrees) for the next CT study: the 2nd of every :data:`PERIOD`, else 0."""
        i = self.n_ct
        self.n_ct += 1
        return TILT_DEG[(i // PERIOD) % len(TILT_DEG)] if i % PERIOD == 1 else 0.0

    def record_tilt(self, rec: SeriesRecord, tilt: float) -> None:
        self.tilted.append((rec.row["folder"], tilt))

    def apply(self, arc: Archive, truth: TruthRows, seed: int) -> None:
        root = arc.root
        (root / "README.txt").write_text(f"Export of Osteolake General PACS, batch {seed}.\n")
        truth.add("dirty_files", {"path": "README.txt", "defect": "non_dicom", "detail": "text file"})
        for folder, tilt in self.tilted:
            truth.add("dirty_files", {"path": folder, "defect": "gantry_tilt", "detail": f"{tilt:.1f} deg"})
        ct: dict[str, dict[str, SeriesRecord]] = {}
        for rec in arc.series:
            if rec.row["kind"] in ("ct_axial_thin", "ct_axial_thick", "ct_localizer"):
                ct.setdefault(rec.row["study_instance_uid"], {})[rec.row["kind"]] = rec
        for i, study in enumerate(ct.values()):
            if i % PERIOD == 2 or (i == 0 and len(ct) < 3):
                self._drop_tags(arc, truth, study["ct_axial_thick"], ("KVP", "ConvolutionKernel", "SliceLocation"))
            if i % PERIOD == 0:
                self._study_dirt(arc, truth, study, first=(i == 0))
        for rec in arc.series:
            prm = rec.row.get("_params")
            if prm is not None and prm.drop_tags:
                truth.add("dirty_files", {"path": rec.row["folder"], "defect": "missing_optional_tags",
                                          "detail": ",".join(prm.drop_tags)})

    def _study_dirt(self, arc: Archive, truth: TruthRows, study: dict[str, SeriesRecord], first: bool) -> None:
        root = arc.root
        thin, thick, loc = study["ct_axial_thin"], study["ct_axial_thick"], study["ct_localizer"]
        folder = thin.row["folder"]
        if first:
            thumbs = folder.rsplit("/", 2)[0] + "/Thumbs.db"
            (root / thumbs).write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
            truth.add("dirty_files", {"path": thumbs, "defect": "non_dicom", "detail": "Windows thumbnail cache"})
            empty = folder.rsplit("/", 1)[0] + "/EMPTY0000"
            (root / empty).write_bytes(b"")
            truth.add("dirty_files", {"path": empty, "defect": "zero_byte", "detail": "0 bytes"})
        # a missing slice in the middle of the thin series
        k = len(thin.files) // 2
        gone = thin.files.pop(k)
        z = pydicom.dcmread(root / gone, stop_before_pixels=True).ImagePositionPatient[2]
        (root / gone).unlink()
        thin.row["n_files"] = len(thin.files)
        truth.add("dirty_files", {"path": folder, "defect": "missing_slice",
                                  "detail": f"instance {k + 1} at z={float(z):.3f} removed"})
        # a truncated file: the last (lowest) slice of the thick series, cut in place
        last = thick.files[-1]
        data = (root / last).read_bytes()
        (root / last).write_bytes(data[: int(len(data) * 0.4)])
        truth.add("dirty_files", {"path": last, "defect": "truncated", "detail": f"{int(len(data) * 0.4)} of "
                                  f"{len(data)} bytes"})
        # a second copy of the localizer in another folder: the same SOPInstanceUID twice
        src = loc.files[0]
        copy = src.rsplit("/", 2)[0] + "/RESEND/" + src.rsplit("/", 1)[1]
        (root / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / src, root / copy)
        truth.add("dirty_files", {"path": copy, "defect": "duplicate_sop_instance_uid", "detail": f"copy of {src}"})

    def _drop_tags(self, arc: Archive, truth: TruthRows, rec: SeriesRecord, tags: tuple[str, ...]) -> None:
        for f in rec.files:
            path = arc.root / f
            ds = pydicom.dcmread(path)
            for t in tags:
                if t in ds:
                    delattr(ds, t)
            ds.save_as(path, enforce_file_format=True)
        truth.add("dirty_files", {"path": rec.row["folder"], "defect": "missing_optional_tags",
                                  "detail": ",".join(tags)})
