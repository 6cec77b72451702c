-- Data-quality failures over the last 30 recorded runs (including runs whose publish was blocked):
-- which checks failed, how often, and when last. Source: marts.dq_failures_recent over the run log
-- (dq_results, run_summaries), which is kept outside the snapshots and never pruned.
select
    severity,
    stage,
    table_name,
    check_name,
    n_runs_failed,
    n_runs_checked,
    last_failed_at,
    last_details
from dq_failures_recent
order by severity, n_runs_failed desc, table_name, check_name
