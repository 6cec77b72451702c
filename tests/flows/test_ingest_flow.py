"""The ingest flow core on a real warehouse: incremental, idempotent, crash-safe, private, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
import typer
from typer.testing import CliRunner

from flows.ingest_archive import ingest_archive, ingest_archive_core
from schemas import get_table
from tests.tasks.dicom.conftest import KEY, RAW_PATIENT, damaged_copies, real_files, write_series
from warehouse.lake import Warehouse

TABLES = ("instances", "series", "studies", "quarantine", "manifest", "duplicates")


def _archive(root: Path) -> Path:
    arch = root / "archive"
    study = pydicom.uid.generate_uid()
    write_series(arch / "p1" / "ct", 14, spacing=2.5, study_uid=study, series_description="CT abdomen")
    write_series(arch / "p1" / "scout", 1, study_uid=study, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                 series_description="scout")
    write_series(arch / "p2" / "dx", 1, modality="DX", series_description="LSPINE LAT",
                 patient={"PatientID": "MRN-0002", "PatientName": "Other^Person", "PatientBirthDate": "19390101"},
                 extra={"ViewPosition": "LL", "BodyPartExamined": "LSPINE"})
    shutil.copy(arch / "p1" / "ct" / "im0003", arch / "p1" / "copy-of-im0003")  # duplicate instance
    (arch / "README.txt").write_text("not a DICOM file")
    damaged_copies(real_files()[:2], arch / "bad", seed=2, per_file=1)
    return arch


def _tables(wh: Warehouse) -> dict[str, list[dict]]:
    out = {}
    for t in TABLES:
        rows = wh.read(t).drop_columns([c for c in ("run_id",) if c in wh.read(t).column_names]).to_pylist()
        out[t] = sorted(rows, key=lambda r: str(sorted(r.items())))
    return out


def test_incremental_and_idempotent(tmp_path: Path) -> None:
    arch = _archive(tmp_path)
    wh = Warehouse(tmp_path / "wh")
    first = ingest_archive_core(str(arch), wh, KEY, batch_size=5)
    n_files = sum(1 for p in arch.rglob("*") if p.is_file())
    assert first["seen"] == first["read"] == n_files
    q = sum(first["quarantined"].values())
    assert first["indexed"] + first["duplicates"] + q == n_files
    sops = set(wh.read("instances").column("sop_instance_uid").to_pylist())
    good = {pydicom.dcmread(p).SOPInstanceUID for p in arch.rglob("im*") if "bad" not in p.parts}
    assert len(good) == 16 and good <= sops and len(sops) == first["indexed"]
    n_bad_ok = first["indexed"] - 16  # a bit flip in a harmless place can leave an indexable file
    assert first["duplicates"] >= 1 and q >= 2 and n_bad_ok <= 2
    assert wh.read("manifest").num_rows == n_files
    series = {r["series_description"]: r for r in wh.read("series").to_pylist()}
    assert series["CT abdomen"]["eligible_extractors"] == ["ct_spine"]
    assert series["LSPINE LAT"]["eligible_extractors"] == ["vertebral_fracture_dx"]
    assert wh.read("studies").num_rows == 2 + n_bad_ok  # the dcmqi copy that survived its bit flip
    before = _tables(wh)
    snap = wh.current_id()

    again = ingest_archive_core(str(arch), wh, KEY)
    assert again["read"] == 0 and again["unchanged"] == n_files and again.get("snapshot_id") is None
    assert wh.current_id() == snap and _tables(wh) == before

    # One new series and one changed file (same SOPInstanceUID, new description).
    write_series(arch / "p3" / "ct", 3, series_description="new one")
    f = arch / "p1" / "ct" / "im0005"
    ds = pydicom.dcmread(f)
    ds.SeriesDescription = "CT abdomen (edited)"
    ds.save_as(f)
    third = ingest_archive_core(str(arch), wh, KEY)
    assert (third["new"], third["changed"], third["read"], third["indexed"]) == (3, 1, 4, 4)
    inst = wh.read("instances")
    assert inst.num_rows == 19 + n_bad_ok
    edited = [r for r in inst.to_pylist() if r["path"] == str(f)]
    assert len(edited) == 1 and edited[0]["series_description"] == "CT abdomen (edited)"
    assert len(set(inst.column("sop_instance_uid").to_pylist())) == inst.num_rows
    # Series and studies re-summarised for the touched series only equal a clean run's.
    clean = Warehouse(tmp_path / "clean")
    ingest_archive_core(str(arch), clean, KEY, batch_size=7)
    assert _tables(clean)["series"] == _tables(wh)["series"]
    assert _tables(clean)["studies"] == _tables(wh)["studies"]


def test_killed_run_then_rerun_equals_clean_run(tmp_path: Path) -> None:
    arch = _archive(tmp_path)
    clean = Warehouse(tmp_path / "clean")
    ingest_archive_core(str(arch), clean, KEY, batch_size=4)

    crashed = Warehouse(tmp_path / "crashed")

    def crash(i: int) -> None:
        if i == 2:
            raise KeyboardInterrupt("killed part-way")

    with pytest.raises(KeyboardInterrupt):
        ingest_archive_core(str(arch), crashed, KEY, batch_size=4, on_batch=crash)
    assert crashed.current_id() is None  # nothing published
    out = ingest_archive_core(str(arch), crashed, KEY, batch_size=4)
    assert out["read"] == out["seen"]
    assert _tables(crashed) == _tables(clean)


def test_no_raw_identifier_in_any_parquet_file(tmp_path: Path) -> None:
    arch = _archive(tmp_path)
    ingest_archive_core(str(arch), tmp_path / "wh", KEY, batch_size=6)
    raw = [*RAW_PATIENT.values(), "MRN-0002", "Other^Person", "19390101", "Testperson", "ACC-998877"]
    files = list((tmp_path / "wh").rglob("*.parquet"))
    assert len(files) >= 6
    for p in files:
        blob = p.read_bytes()
        text = str(pq.read_table(p).to_pylist())
        for s in raw:
            assert s.encode() not in blob and s not in text, (p.name, s)


@pytest.mark.integration
def test_two_dask_workers_give_the_same_tables(tmp_path: Path) -> None:
    arch = _archive(tmp_path)
    local = Warehouse(tmp_path / "local")
    ingest_archive_core(str(arch), local, KEY, batch_size=3)
    dask = Warehouse(tmp_path / "dask")
    out = ingest_archive_core(str(arch), dask, KEY, batch_size=3, workers=2)
    assert out["indexed"] >= 16
    assert _tables(dask) == _tables(local)
    # the workers wrote the instance files (one per batch; the batch that lost its duplicate row was
    # rewritten): every data file on disk is one the snapshot lists, nothing staged is left behind
    listed = {f["path"] for f in dask.manifest(dask.current_id())["tables"]["instances"]["files"]}
    on_disk = {p.relative_to(dask.root).as_posix() for p in (dask.root / "data" / "instances").iterdir()}
    assert on_disk == listed and len(listed) >= 5


@pytest.mark.integration
def test_several_folders_stream_through_one_pipeline(tmp_path: Path) -> None:
    """A first run over two folders on two workers: the second folder's batches start before the first
    folder's are resolved, yet the tables equal one folder after the other in this process, and an
    instance present in both folders is indexed once (from the first folder) and recorded as a duplicate."""
    arch = _archive(tmp_path)
    second = tmp_path / "second"
    write_series(second / "p3" / "ct", 9, spacing=1.25, series_description="CT chest")
    shutil.copy(arch / "p1" / "ct" / "im0005", second / "p3" / "also-im0005")  # duplicate across folders
    sources = [str(arch), str(second)]
    local = Warehouse(tmp_path / "local")
    seq = ingest_archive_core(sources, local, KEY, batch_size=4)
    dask = Warehouse(tmp_path / "dask")
    out = ingest_archive_core(sources, dask, KEY, batch_size=4, workers=2)
    assert _tables(dask) == _tables(local)
    n_files = sum(1 for root in (arch, second) for f in root.rglob("*") if f.is_file())
    assert out["seen"] == seq["seen"] == n_files
    assert out["indexed"] + out["duplicates"] + sum(out["quarantined"].values()) == n_files
    dup = [r["path"] for r in dask.read("duplicates").to_pylist()]
    assert any(p.endswith("also-im0005") for p in dup)
    kept = {r["path"] for r in dask.read("instances").select(["path"]).to_pylist()}
    assert str(arch / "p1" / "ct" / "im0005") in kept


def test_compaction_of_worker_files_keeps_every_row(tmp_path: Path) -> None:
    arch = _archive(tmp_path)
    local = Warehouse(tmp_path / "local")
    ingest_archive_core(str(arch), local, KEY)
    wh = Warehouse(tmp_path / "wh", compact_at=2)  # the publish merges the workers' small files
    ingest_archive_core(str(arch), wh, KEY, batch_size=3, workers=2)
    entries = wh.manifest(wh.current_id())["tables"]["instances"]["files"]
    assert entries and all(e.get("compacted_from", 0) >= 3 and e["partition"].startswith("study_year=")
                           for e in entries)
    assert _tables(wh) == _tables(local)
    for e in entries:  # each compacted row group sorted by the key, with the declared schema
        f = pq.ParquetFile(wh.root / e["path"])
        assert f.schema_arrow.remove_metadata().equals(get_table("instances").arrow_schema())
        for i in range(f.num_row_groups):
            sops = f.read_row_group(i).column("sop_instance_uid").to_pylist()
            assert sops == sorted(sops)


def test_worker_that_cannot_write_sends_its_rows_back(tmp_path: Path) -> None:
    from flows.ingest_batches import Batch, index_one
    from tasks.dicom.sources import FolderSource

    arch = _archive(tmp_path)
    paths = sorted(str(p) for p in (arch / "p1" / "ct").iterdir())[:4]
    kw = {"key": KEY, "default_issuer": None, "fast": True}
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    res = index_one(FolderSource(str(arch)), Batch(paths), kw, {"instances": str(blocked / "x.parquet")}, "r1")
    assert not res.staged and "dicom_json" in res.parsed.column_names and res.parsed.num_rows == 4
    ok = index_one(FolderSource(str(arch)), Batch(paths), kw,
                   {"instances": str(tmp_path / "x.parquet"), "manifest": str(tmp_path / "m.parquet")}, "r1")
    assert ok.staged == {"instances", "manifest"} and "dicom_json" not in ok.parsed.column_names
    m = pq.read_table(tmp_path / "m.parquet")
    assert m.column("run_id").to_pylist() == ["r1"] * 4 and m.column("path").to_pylist() == paths
    assert pq.read_table(tmp_path / "x.parquet").equals(res.parsed.cast(pq.read_schema(tmp_path / "x.parquet")))


def test_cli_and_flow_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli.ingest import register

    arch = _archive(tmp_path)
    monkeypatch.setenv("OSTEOLAKE_PSEUDONYM_KEY", KEY.decode())
    monkeypatch.setenv("OSTEOLAKE_CONFIG", str(tmp_path / "none.toml"))
    app = typer.Typer()
    register(app)

    @app.callback()
    def _main() -> None:  # keep "ingest" a subcommand
        pass

    r = CliRunner().invoke(app, ["ingest", str(arch), "--warehouse", str(tmp_path / "wh")])
    assert r.exit_code == 0, r.output
    assert "indexed 1" in r.output and "duplicates 1" in r.output and "files/s" in r.output
    assert "quarantined by reason" in r.output
    r = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope"), "--warehouse", str(tmp_path / "wh")])
    assert r.exit_code == 2 and "no such" in r.output
    fn = getattr(ingest_archive, "fn", ingest_archive)
    out = fn(str(arch), warehouse=str(tmp_path / "wh2"), workers=1)
    assert out["indexed"] >= 16 and isinstance(Warehouse(tmp_path / "wh2").read("series"), pa.Table)


EXPECTED = {"ct_axial_thin": ["ct_spine"], "ct_axial_thick": ["ct_spine"], "dx_lateral_spine": ["vertebral_fracture_dx"],
            "dxa_hip": ["dxa_hip"], "dxa_spine": ["dxa_spine"], "ct_localizer": [], "ct_sagittal": [],
            "ct_dose_sr": [], "mr": []}


def test_synthetic_hospital_against_truth(tmp_path: Path) -> None:
    import polars as pl

    from synthetic.hospital import generate

    generate(tmp_path / "h", 3, 5, small=True)
    wh = Warehouse(tmp_path / "wh")
    out = ingest_archive_core(str(tmp_path / "h" / "archive"), wh, KEY, batch_size=64)
    truth = pl.read_parquet(tmp_path / "h" / "truth" / "series.parquet")
    series = pl.from_arrow(wh.read("series"))
    j = truth.join(series, on="series_instance_uid", how="left")
    assert j["n_instances"].null_count() == 0
    for row in j.iter_rows(named=True):
        assert row["eligible_extractors"] == EXPECTED[row["kind"]], row
    # Every series is complete except where the dirt removed or broke a slice.
    dirty = pl.read_parquet(tmp_path / "h" / "truth" / "dirty_files.parquet")
    defects = dict(zip(dirty["path"], dirty["defect"], strict=True))
    q = {r["path"]: r["reason"] for r in wh.read("quarantine").to_pylist()}
    root = str(tmp_path / "h" / "archive") + "/"
    for path, defect in defects.items():
        if defect in ("non_dicom", "zero_byte"):
            assert q[root + path] == "not_dicom"
        elif defect == "truncated":
            assert q[root + path] == "truncated"
        elif defect == "duplicate_sop_instance_uid":
            assert root + path in wh.read("duplicates").column("path").to_pylist()
    assert sum(out["quarantined"].values()) == len(q)
    assert out["indexed"] + out["duplicates"] + len(q) == out["seen"]


def test_batches_keep_the_order_and_shrink_at_the_end() -> None:
    from flows.ingest_batches import batched

    for n, size in [(0, 8), (5, 8), (16, 8), (17, 8), (100, 8), (1000, 64)]:
        sizes = []
        out = []
        for part in batched(iter(range(n)), size, taper=2):
            sizes.append(len(part))
            out += part
        assert out == list(range(n)), (n, size)
        assert all(0 < s <= size for s in sizes) and sizes == sorted(sizes, reverse=True), (n, sizes)
        if n >= 2 * size:  # at least a full batch's worth of files is spread over smaller batches at the end
            assert sum(s for s in sizes if s < size) >= size, (n, sizes)
    assert [len(p) for p in batched(range(10), 4)] == [4, 4, 2]  # no taper: plain batches
