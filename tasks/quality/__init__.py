"""Data quality: expectation suites generated from ``schemas``, domain rules, OMOP DQD-style checks, the
HTML report and the publish verdict.

Typical use in a flow::

    results = check_tables("extract", {"series": series, "vertebra_measurements": vm})
    results += check_omop_input(omop_frames)
    outcome = verdict(results, run_id)
    if not outcome.passed:
        ...  # do not publish; record outcome.results and outcome.reason()
"""

from tasks.quality.gate import check_omop_input, check_tables, verdict
from tasks.quality.omop import OmopThresholds, check_omop
from tasks.quality.report import render_report
from tasks.quality.results import (
    CheckKind,
    CheckResult,
    QualityOutcome,
    Severity,
    results_from_table,
    results_table,
)
from tasks.quality.rules import (
    DOMAIN_RULES,
    CompletenessRule,
    DateOrderRule,
    RangeRule,
    ReferenceRule,
    UniqueRule,
    run_rules,
)

__all__ = [
    "CheckKind",
    "CheckResult",
    "CompletenessRule",
    "DOMAIN_RULES",
    "DateOrderRule",
    "OmopThresholds",
    "QualityOutcome",
    "RangeRule",
    "ReferenceRule",
    "Severity",
    "UniqueRule",
    "check_omop",
    "check_omop_input",
    "check_tables",
    "render_report",
    "results_from_table",
    "results_table",
    "run_rules",
    "verdict",
]
