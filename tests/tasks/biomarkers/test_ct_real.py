"""CT extraction on real scans made by other projects: no crash, sensible flags, plausible values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from schemas.registry import get_table
from tasks.biomarkers.extract import extract_ct_series

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "real-dicom"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real DICOM folder {REAL} is absent")


@needs_real
def test_lower_chest_series_t11_t12() -> None:
    res = extract_ct_series(REAL / "totalsegmentator-ct-t11-t12")
    out = res.to_json()
    assert "contrast_enhanced" in out["flags"]
    # 40 mm of coverage cannot show the last rib and the sacrum together: labels must admit doubt
    assert all(v["confidence"] <= 0.5 for v in out["vertebrae"])
    for v in out["vertebrae"]:
        assert -810 <= v["z_mm"] <= -760  # inside the scanned range
        if v["trabecular_hu_mean"] is not None:
            assert 50 <= v["trabecular_hu_mean"] <= 400  # plausible trabecular bone (contrast-enhanced)
    tables = res.tables()
    for name, t in tables.items():
        assert t.schema.equals(get_table(name).arrow_schema())
        assert "patient_id" not in t.column_names
    assert tables["extraction_runs"].num_rows == 1
    assert res.qc_png is not None and res.qc_png[:8] == b"\x89PNG\r\n\x1a\n"


@needs_real
def test_head_ct_with_tilt_finds_no_spine() -> None:
    out = extract_ct_series(REAL / "ge-head-ct-gantry-tilt").to_json()
    assert "gantry_tilt" in out["flags"]
    assert out["vertebrae"] == [] or all(v["confidence"] < 0.5 for v in out["vertebrae"])


@needs_real
def test_three_slice_abdomen_does_not_crash() -> None:
    out = extract_ct_series(REAL / "dcmqi-ct-3slice").to_json()
    assert "few_slices" in out["flags"]
    assert out["status"] in ("ok", "partial")


def test_pydicom_single_slice_cts() -> None:
    for name in ("CT_small.dcm",):
        out = extract_ct_series([get_testdata_file(name)]).to_json()
        assert "single_slice" in out["flags"]
    try:
        pancreas = get_testdata_file("explicit_VR-UN.dcm")  # pydicom-data: a pancreas CT slice
    except Exception:  # noqa: BLE001 - pydicom-data absent or not downloadable
        pancreas = None
    if pancreas:
        out = extract_ct_series([pancreas]).to_json()
        assert "single_slice" in out["flags"]


@needs_real
def test_cli_json_and_exit_code(tmp_path: Path) -> None:
    from flows.cli import get_app

    runner = CliRunner()
    png = tmp_path / "qc.png"
    r = runner.invoke(get_app(), ["extract", str(REAL / "dcmqi-ct-3slice"), "--json", "--qc-png", str(png)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"series_instance_uid", "vertebrae", "body_composition", "flags"} <= set(out)
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(get_app(), ["extract", str(tmp_path / "nothing-here"), "--json"])
    assert r.exit_code == 2
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    r = runner.invoke(get_app(), ["extract", str(tmp_path / "junk"), "--json"])
    assert r.exit_code == 2


@needs_real
def test_cli_projection_folder_falls_back_without_a_second_read() -> None:
    """A folder without CT (a real DX radiograph) goes to the projection extractor (exit 0)."""
    from flows.cli import get_app

    r = CliRunner().invoke(get_app(), ["extract", str(REAL / "highdicom-dx"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "series_instance_uid" in out
