"""``osteolake export-omop`` end to end: person_id from the synthetic hospital's OMOP person table."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from synthetic.hospital import generate
from tasks.privacy import person_key
from warehouse.lake import Warehouse

KEY = "export-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, patients=5, seed=3, small=True)  # what `osteolake synth --patients 5 --seed 3` writes
    return out


@pytest.fixture(scope="module")
def warehouse(hospital: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse whose series and L1..L5 densities are the hospital's ground truth, keyed as ingest keys them."""
    truth = pl.read_parquet(hospital / "truth" / "series.parquet")
    series = truth.select(
        "series_instance_uid", "study_instance_uid", "modality", "study_date", pl.col("n_files").alias("n_instances"),
        pl.col("patient_id").map_elements(lambda p: person_key(KEY.encode(), p), return_dtype=pl.String)
        .alias("person_key"),
    )
    stranger = pl.DataFrame({"series_instance_uid": ["9.9.9"], "study_instance_uid": ["9.9"], "modality": ["CT"],
                             "study_date": truth["study_date"][:1], "n_instances": truth["n_files"][:1],
                             "person_key": [person_key(KEY.encode(), "MRN-NOT-IN-OMOP")]})
    vertebrae = pl.read_parquet(hospital / "truth" / "vertebrae.parquet").filter(
        pl.col("trabecular_hu").is_not_null()).select(
        "series_instance_uid", "level", pl.lit("truth").alias("extractor_version"),
        pl.col("trabecular_hu").alias("trabecular_hu_mean"))
    root = tmp_path_factory.mktemp("export") / "wh"
    b = Warehouse(root).begin("load")
    b.replace("series", pl.concat([series, stranger]).to_arrow())
    b.replace("vertebra_measurements", vertebrae.to_arrow())
    b.publish()
    return root


@pytest.fixture
def app() -> typer.Typer:
    from flows.cli import export

    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command keeps Typer from flattening the app
    export.register(app)
    return app


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_omop_maps_person_id_from_the_omop_person_table(
    app: typer.Typer, hospital: Path, warehouse: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mi"
    result = CliRunner().invoke(
        app, ["export-omop", "--to", str(out), "--warehouse", str(warehouse), "--omop", str(hospital / "omop"),
              "--id-offset", "5000"],
        env={"OSTEOLAKE_PSEUDONYM_KEY": KEY, "OSTEOLAKE_ISSUER": ""})
    assert result.exit_code == 0, result.output
    assert "1 series left out" in result.output
    truth = pl.read_parquet(hospital / "truth" / "series.parquet")
    persons = dict(pl.read_parquet(hospital / "truth" / "persons.parquet").select("patient_id", "person_id").iter_rows())
    want = {r["series_instance_uid"]: persons[r["patient_id"]] for r in truth.iter_rows(named=True)}
    io = {r["image_series_uid"]: r for r in read_csv(out / "image_occurrence.csv")}
    assert {uid: int(r["person_id"]) for uid, r in io.items()} == want  # every series, its OMOP person
    assert "9.9.9" not in io
    assert all(int(r["image_occurrence_id"]) > 5000 for r in io.values())
    meas = read_csv(out / "measurement.csv")
    vertebrae = pl.read_parquet(hospital / "truth" / "vertebrae.parquet").filter(pl.col("trabecular_hu").is_not_null())
    assert len(meas) == vertebrae.height > 0
    by_level = {(io_row["image_series_uid"], m["value_source_value"]): float(m["value_as_number"])
                for m in meas for io_row in io.values() if m["measurement_event_id"] == io_row["image_occurrence_id"]}
    for r in vertebrae.iter_rows(named=True):
        assert by_level[(r["series_instance_uid"], r["level"])] == pytest.approx(r["trabecular_hu"], rel=1e-6)
    assert len(read_csv(out / "image_feature.csv")) == len(meas)
    assert len(read_csv(out / "procedure_occurrence.csv")) == truth["study_instance_uid"].n_unique()


def test_export_omop_with_another_key_maps_nobody(
    app: typer.Typer, hospital: Path, warehouse: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["export-omop", "--to", str(tmp_path / "mi"), "--warehouse", str(warehouse),
              "--omop", str(hospital / "omop")],
        env={"OSTEOLAKE_PSEUDONYM_KEY": "some-other-site-key-0123456789", "OSTEOLAKE_ISSUER": ""})
    assert result.exit_code == 0, result.output
    n_series = pl.read_parquet(hospital / "truth" / "series.parquet").height + 1
    assert f"{n_series} series left out" in result.output
    assert read_csv(tmp_path / "mi" / "image_occurrence.csv") == []


def test_export_omop_needs_an_omop_source(app: typer.Typer, warehouse: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSTEOLAKE_OMOP", raising=False)
    result = CliRunner().invoke(app, ["export-omop", "--to", str(tmp_path / "mi"), "--warehouse", str(warehouse)],
                                env={"OSTEOLAKE_PSEUDONYM_KEY": KEY})
    assert result.exit_code == 2 and "--omop" in result.output
