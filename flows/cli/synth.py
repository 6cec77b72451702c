"""``osteolake synth``: write the synthetic hospital (DICOM archive, OMOP extract, ground truth)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from flows.cli.common import console, fail, progress_bar


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(
        out: Path = typer.Option(..., "--out", help="output folder (archive/, omop/, truth/ are written in it)"),
        patients: int = typer.Option(200, "--patients", min=1, help="number of patients"),
        seed: int = typer.Option(7, "--seed", help="random seed; the same seed gives the same hospital"),
        small: bool = typer.Option(
            False, "--small", help="small image matrices: a header-heavy archive for ingest benchmarks"
        ),
    ) -> None:
        """Write a synthetic hospital: DIR/archive (DICOM), DIR/omop (OMOP CDM CSV), DIR/truth (Parquet)."""
        from synthetic.hospital import generate

        if out.exists() and any(out.iterdir()):
            fail(f"--out {out}: folder exists and is not empty; choose a new folder")
        start = time.perf_counter()
        with progress_bar("synthesising patients", patients) as bar:
            task = bar.task_ids[0]

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            counts = generate(out, patients, seed, small=small, progress=advance)
        console.print(f"wrote the synthetic hospital to [bold]{out}[/] in {time.perf_counter() - start:.1f} s")
        for name, n in sorted(counts.items()):
            console.print(f"  {name}: {n}")
