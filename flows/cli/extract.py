"""``osteolake extract SERIES_DIR``: CT (or projection) biomarkers of one series folder, no Prefect.

Prints a summary, or with ``--json`` one JSON object (``tasks.biomarkers.extract.CTResult.to_json``);
``--qc-png PATH`` writes the QC figure. A folder with several series: the thinnest complete axial CT
series is measured and named in ``selected_series``. Bad input exits with code 2 and a clear message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _projection(folder: Path) -> Any:
    try:
        from tasks.biomarkers.projection import extract_projection_series
    except ImportError as e:
        raise ValueError(f"{folder}: no CT series, and projection extraction is not available ({e})") from e
    return extract_projection_series([folder])


def register(app: typer.Typer) -> None:
    """Add the ``extract`` command to ``app``."""

    @app.command("extract")
    def extract(
        series_dir: Annotated[Path, typer.Argument(help="folder holding the DICOM files of one or more series")],
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
        qc_png: Annotated[Path | None, typer.Option("--qc-png", help="write the QC figure (PNG) here")] = None,
        backend: Annotated[str, typer.Option(help="segmentation backend: classical | totalsegmentator")] = "classical",
        calibration: Annotated[str, typer.Option(help="vBMD calibration: default | internal_fat")] = "default",
    ) -> None:
        """Measure vertebral density, levels and body composition of a CT series (fast path, no Prefect)."""
        from flows.cli.common import fail
        from tasks.biomarkers.extract import extract_ct_series
        from tasks.dicom.volume import NoCTSeries

        if not series_dir.exists():
            fail(f"SERIES_DIR {series_dir}: no such file or folder")
        try:
            try:  # each file is read once: the CT path reads headers and pixels in one pass
                res: Any = extract_ct_series(series_dir, backend=backend, calibration=calibration,
                                             with_qc=qc_png is not None)
            except NoCTSeries:
                if not series_dir.is_dir():
                    raise
                res = _projection(series_dir)
        except (ValueError, RuntimeError) as e:
            fail(str(e))
        out = res.to_json()
        if qc_png is not None:
            png = getattr(res, "qc_png", None)
            if png:
                qc_png.write_bytes(png)
        if as_json:
            typer.echo(json.dumps(out, default=str))
            return
        typer.echo(f"series {out.get('series_instance_uid')}  flags: {', '.join(out.get('flags', [])) or 'none'}")
        for v in out.get("vertebrae", []):
            typer.echo(f"  {v['level']:>3}  z {v['z_mm']:8.1f} mm  HU {v['trabecular_hu_mean']}  "
                       f"vBMD {v['vbmd_mg_cm3']}  conf {v['confidence']}")
        for b in out.get("body_composition", []):
            typer.echo(f"  {b['level']:>3}  muscle {b['muscle_area_cm2']} cm2 ({b['muscle_hu_mean']} HU)  "
                       f"VAT {b['vat_area_cm2']}  SAT {b['sat_area_cm2']}  IMAT {b['imat_area_cm2']}")
