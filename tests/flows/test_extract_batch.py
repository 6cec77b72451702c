"""One failing series never stops the others: each outcome becomes an ``extraction_runs`` row."""

from __future__ import annotations

from pathlib import Path

from flows.extract_biomarkers import SeriesJob, extract_batch_fn
from tasks.biomarkers import extract as ct


def test_a_broken_series_is_recorded_and_the_next_one_still_runs(tmp_path: Path, real_dicom_dir: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a DICOM file at all" * 10)
    real = sorted(str(p) for p in (real_dicom_dir / "dcmqi-ct-3slice").iterdir())
    jobs = [
        SeriesJob("1.2.3.broken", None, ct.EXTRACTOR, ct.EXTRACTOR_VERSION, (str(junk),)),
        SeriesJob("real", None, ct.EXTRACTOR, ct.EXTRACTOR_VERSION, tuple(real)),
    ]
    out = extract_batch_fn(jobs, [str(tmp_path)])
    assert len(out.runs) == 2
    broken = next(r for r in out.runs if r["series_instance_uid"] == "1.2.3.broken")
    assert broken["status"] == "failed" and broken["error"]
    other = next(r for r in out.runs if r is not broken)
    assert other["status"] != "failed", other.get("error")
    assert other["extractor"] == ct.EXTRACTOR and other["extractor_version"] == ct.EXTRACTOR_VERSION
