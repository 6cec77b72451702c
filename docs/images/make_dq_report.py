"""Make the example data-quality report shown in the README (docs/images/dq_report.png).

Small tables built on the real declarations, with injected defects (orphan series, out-of-range HU, a
duplicate key, a fracture before birth, a visit after death, a missing OMOP column)::

    .venv/bin/python docs/images/make_dq_report.py /tmp/report.html
    chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \\
        --hide-scrollbars --window-size=1280,1100 --screenshot=docs/images/dq_report.png file:///tmp/report.html
"""
import sys
from datetime import UTC, date, datetime

import pyarrow as pa

from schemas import get_table
from tasks.quality import check_omop_input, check_tables, verdict

S, SE = get_table("studies"), get_table("series")
VM, BC = get_table("vertebra_measurements"), get_table("body_composition")
studies = S.conform(pa.table({"study_instance_uid": ["1.2.1", "1.2.2", "1.2.3"], "age_at_study_years": [61.5, 74.0, 68.2],
    "n_series": [2, 1, 1], "n_instances": [240, 1, 120]}))
series = SE.conform(pa.table({"series_instance_uid": ["1.2.1.1", "1.2.1.2", "1.2.2.1", "1.2.3.1", "9.9.9.1"],
    "study_instance_uid": ["1.2.1", "1.2.1", "1.2.2", "1.2.3", "9.9.9"], "modality": ["CT", "CT", "DX", "CT", "CT"],
    "n_instances": [120, 120, 1, 120, 80]}))
levels = ["T12", "L1", "L2", "L3"]
vm = VM.conform(pa.table({"series_instance_uid": ["1.2.1.1"] * 4 + ["1.2.3.1"] * 4 + ["1.2.3.1"],
    "level": levels + levels + ["L1"], "trabecular_hu_mean": [165.0, 158.0, 150.0, 141.0, 96.0, 1450.0, 88.0, 84.0, 90.0],
    "extractor_version": ["ct-1.0"] * 9}))
bc = BC.conform(pa.table({"series_instance_uid": ["1.2.1.1", "1.2.3.1"], "level": ["L3", "L3"],
    "muscle_hu_mean": [38.2, 31.5], "muscle_area_cm2": [142.0, 118.0], "extractor_version": ["ct-1.0"] * 2}))
omop = {
    "person": pa.table({"person_id": [1, 2, 3], "gender_concept_id": [8532, 8507, 8532], "year_of_birth": [1950, 1942, 1961],
        "race_concept_id": [0, 0, 0], "ethnicity_concept_id": [0, 0, 0]}),
    "observation_period": pa.table({"observation_period_id": [1, 2, 3], "person_id": [1, 2, 3],
        "observation_period_start_date": [date(2010, 1, 1)] * 3, "observation_period_end_date": [date(2026, 6, 30)] * 3,
        "period_type_concept_id": [32817] * 3}),
    "condition_occurrence": pa.table({"condition_occurrence_id": [10, 11, 12], "person_id": [1, 2, 3],
        "condition_concept_id": [4300192, 4138412, 80502], "condition_start_date": ["2015-04-02", "1938-09-30", "2019-01-15"],
        "condition_type_concept_id": [32020] * 3}),
    "measurement": pa.table({"measurement_id": [1000], "person_id": [1], "measurement_concept_id": [3025315],
        "measurement_type_concept_id": [32817]}),
    "visit_occurrence": pa.table({"visit_occurrence_id": [100], "person_id": [2], "visit_concept_id": [9202],
        "visit_start_date": [date(2019, 12, 1)], "visit_end_date": [date(2019, 12, 1)], "visit_type_concept_id": [32817]}),
    "death": pa.table({"person_id": [2], "death_date": [date(2018, 2, 1)]}),
}
results = check_tables("ingest", {"studies": studies, "series": series})
results += check_tables("extract", {"vertebra_measurements": vm, "body_composition": bc}, context={"series": series})
results += check_omop_input(omop)
out = verdict(results, "20261204T020000Z-3f9a1c", datetime(2026, 12, 4, 2, 0, tzinfo=UTC))
open(sys.argv[1] if len(sys.argv) > 1 else "dq_report.html", "w").write(out.report_html)
print(len(results), out.critical_failures, out.warnings, sep="\n")
