"""The fast reader gives exactly pydicom's promoted values and DICOM JSON, on every corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.dicom.fastheader import FastPathUnsupported, read_fast
from tasks.dicom.header import HeaderError, parse_header, parse_header_pydicom
from tests.tasks.dicom.conftest import damaged_copies, real_files, shipped_files, write_series


def _outcome(data: bytes, key: bytes, fast: bool) -> tuple[str, dict | None]:
    try:
        row = parse_header(data, key=key) if fast else parse_header_pydicom(data, key=key)
    except HeaderError as e:
        return e.reason.value, None
    return "ok", row


def _compare(files: list[Path], key: bytes) -> dict[str, int]:
    counts = {"files": 0, "fast": 0, "pydicom": 0, "quarantined": 0}
    mismatches = []
    for f in files:
        data = f.read_bytes()
        counts["files"] += 1
        v_fast, r_fast = _outcome(data, key, True)
        v_ref, r_ref = _outcome(data, key, False)
        if v_fast != v_ref:
            mismatches.append((f.name, "verdict", v_fast, v_ref))
            continue
        if r_fast is None or r_ref is None:
            counts["quarantined"] += 1
            continue
        counts[r_fast["parser"]] += 1
        assert set(r_fast) - {"_series_part"} == set(r_ref)
        for col, val in r_ref.items():
            if col in ("parser", "dicom_json"):
                continue
            if r_fast[col] != val:
                mismatches.append((f.name, col, r_fast[col], val))
        if json.loads(r_fast["dicom_json"]) != json.loads(r_ref["dicom_json"]):
            mismatches.append((f.name, "dicom_json", "", ""))
    assert not mismatches, mismatches[:10]
    return counts


def test_shipped_files_identical(key: bytes) -> None:
    counts = _compare(shipped_files(), key)
    assert counts["files"] >= 250
    # Most shipped files are little endian: the fast path must take them (not fall back).
    assert counts["fast"] >= 190, counts
    assert counts["pydicom"] >= 30, counts  # big endian, deflate, no preamble, ISO 2022 ... fall back


def test_real_files_identical(key: bytes) -> None:
    files = real_files()
    assert len(files) >= 50, "real-dicom corpus missing"
    counts = _compare(files, key)
    # dcmqi (implicit VR), GE head CT, DX: indexed on the fast path; TotalSegmentator slices have empty
    # Study/Series UIDs (anonymised) and are quarantined by both readers.
    assert counts["fast"] == 32 and counts["quarantined"] == 20, counts


def test_synthetic_files_identical(tmp_path: Path, key: bytes) -> None:
    files = write_series(tmp_path / "e", 3) + write_series(tmp_path / "i", 3, implicit=True)
    counts = _compare(files, key)
    assert counts["fast"] == 6


def test_damaged_copies_same_verdict_and_values(tmp_path: Path, key: bytes) -> None:
    src = real_files()[::6] + [p for p in shipped_files() if p.suffix == ".dcm"][::10]
    damaged = damaged_copies(src, tmp_path, seed=11)
    counts = _compare(damaged, key)
    assert counts["quarantined"] > len(damaged) // 4, counts


def test_fast_reader_refuses_what_it_does_not_handle() -> None:
    big = next(p for p in shipped_files() if p.name == "MR_small_bigendian.dcm")
    with pytest.raises(FastPathUnsupported):
        read_fast(big.read_bytes())
    with pytest.raises(FastPathUnsupported):
        read_fast(b"not a dicom file at all" * 10)


def test_template_parse_equals_plain_parse(tmp_path: Path) -> None:
    """Reusing runs of the previous file's elements gives exactly the plain parse (or the same error)."""
    from tasks.dicom import fastheader

    files = write_series(tmp_path / "s", 5) + real_files() + [p for p in shipped_files() if p.suffix == ".dcm"]
    files += damaged_copies(files[:8] + real_files()[::5], tmp_path / "bad", seed=7)
    prev: bytes | None = None
    templated = 0
    for f in files:
        data = f.read_bytes()
        outcomes = []
        for template_from in (None, prev):
            fastheader._TEMPLATE.last = None
            if template_from is not None:
                try:
                    fastheader.read_fast(template_from)
                except Exception:  # noqa: BLE001, S110 - a broken previous file leaves no template
                    pass
            try:
                fh = fastheader.read_fast(data)
                outcomes.append((fh.elements, fh.tags, fh.wholes, fh.pixel_pos))
            except Exception as e:  # noqa: BLE001
                outcomes.append((type(e).__name__,))
        assert outcomes[0] == outcomes[1], f.name
        templated += fastheader._TEMPLATE.last is not None and prev is not None
        prev = data
    assert templated > 100
