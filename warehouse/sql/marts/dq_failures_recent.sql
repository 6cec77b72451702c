-- dq_failures_recent: data-quality checks that failed at least once in the last 30 recorded runs.
-- A table in the catalog, recomputed whenever a run is recorded (warehouse/runlog.py: RUN_LOG_MODELS), so
-- analysts read a few rows instead of aggregating the whole run log on every query.
-- grain: one row per failing check (stage, table, check)
with runs as (
    select run_id, max(recorded_at) as recorded_at
    from marts.run_summaries
    group by run_id
    order by recorded_at desc
    limit 30
),

results as (
    select d.*, r.recorded_at
    from marts.dq_results d
    join runs r using (run_id)
),

final as (
    select
        stage,
        table_name,
        check_name,
        any_value(severity) as severity,
        count(distinct run_id) filter (where not success) as n_runs_failed,
        count(distinct run_id) as n_runs_checked,
        max(recorded_at) filter (where not success) as last_failed_at,
        arg_max(details, recorded_at) filter (where not success) as last_details,
        sum(failing_count) filter (where not success) as failing_rows_total
    from results
    group by stage, table_name, check_name
    having count(*) filter (where not success) > 0
)

select * from final
