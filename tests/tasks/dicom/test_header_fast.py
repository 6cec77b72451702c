"""The fast reader gives exactly pydicom's promoted values and DICOM JSON, on every corpus."""

from __future__ import annotations

import json
from datetime import date
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


def _fresh(data: bytes) -> tuple:
    from tasks.dicom import fastheader

    fastheader.reset_state()
    try:
        fh = fastheader.read_fast(data)
    except Exception as e:  # noqa: BLE001
        return (type(e).__name__,)
    return fh.meta, fh.elements, fh.tags, fh.wholes, fh.pixel_pos, fh.transfer_syntax, fh.encoding


def test_template_parse_equals_plain_parse(tmp_path: Path) -> None:
    """Reusing runs of the previous file's elements gives exactly the plain parse (or the same error)."""
    from tasks.dicom import fastheader

    files = write_series(tmp_path / "s", 5) + real_files() + [p for p in shipped_files() if p.suffix == ".dcm"]
    files += damaged_copies(files[:8] + real_files()[::5], tmp_path / "bad", seed=7)
    prev: bytes | None = None
    templated = 0
    for f in files:
        data = f.read_bytes()
        plain = _fresh(data)
        fastheader.reset_state()
        if prev is not None:
            try:
                fastheader.read_fast(prev)
            except Exception:  # noqa: BLE001, S110 - a broken previous file leaves no template
                pass
        fastheader._TEMPLATE.layout = None  # the template path alone
        try:
            fh = fastheader.read_fast(data)
            got: tuple = (fh.meta, fh.elements, fh.tags, fh.wholes, fh.pixel_pos, fh.transfer_syntax, fh.encoding)
        except Exception as e:  # noqa: BLE001
            got = (type(e).__name__,)
        assert got == plain, f.name
        templated += fastheader._TEMPLATE.last is not None and prev is not None
        prev = data
    assert templated > 100


def test_layout_match_equals_plain_parse(tmp_path: Path, key: bytes) -> None:
    """A file read through the layout of its series (only the varying elements re-read) gives exactly
    the plain parse, the same row and the same DICOM JSON text; damaged files the same verdict."""
    from tasks.dicom import dicom_json, fastheader
    from tasks.dicom.header import build_row_fast, reset_memos

    series = [write_series(tmp_path / "e", 6), write_series(tmp_path / "i", 6, implicit=True),
              write_series(tmp_path / "x", 4, extra={"AcquisitionDate": "20200518"})]
    folders: dict[str, list[Path]] = {}
    for p in real_files():
        folders.setdefault(p.parent.name, []).append(p)
    # Two series of the same shape back to back: a layout learnt across them is loose, then tightened.
    two = series[0] + write_series(tmp_path / "e2", 5, series_description="other", study_date=date(2021, 1, 2))
    sequences = [*series, two, *folders.values()]
    for seq in sequences[:2]:  # the same files, damaged, after good files of their series
        bad = damaged_copies(seq[2:4], tmp_path / f"bad_{seq[0].parent.name}", seed=5, per_file=3)
        sequences.append(seq[:3] + bad)
    matched = tightened = 0
    for seq in sequences:
        reset_memos()
        states = []
        for f in seq:
            data = f.read_bytes()
            try:
                fh = fastheader.read_fast(data)
            except Exception as e:  # noqa: BLE001
                states.append((f, (type(e).__name__,), None, None))
                continue
            got = (fh.meta, fh.elements, fh.tags, fh.wholes, fh.pixel_pos, fh.transfer_syntax, fh.encoding)
            row = build_row_fast(fh, key=key)
            row.pop("_series_part")
            states.append((f, got, row, dicom_json.header_json_text(fh)))
            matched += fh.layout is not None
            tightened += fh.layout is not None and fastheader._TEMPLATE.layout is not fh.layout
        for f, got, row, text in states:
            assert got == _fresh(f.read_bytes()), f.name
            if row is None:
                continue
            reset_memos()
            fh = fastheader.read_fast(f.read_bytes())
            ref = build_row_fast(fh, key=key)
            ref.pop("_series_part")
            assert row == ref, f.name
            assert text == dicom_json.header_json_text(fh), f.name
            assert json.loads(text) == dicom_json.elements_to_json(fh.elements, fh.encoding), f.name
    assert matched >= 20 and tightened >= 1
