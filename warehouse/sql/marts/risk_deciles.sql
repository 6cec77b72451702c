-- risk_deciles: predicted risk deciles of each outcome's production model against observed fractures.
-- grain: one row per outcome and decile of predicted risk (1 = lowest)
-- Observed risk is the complete-case proportion at the horizon: events within the horizon over persons
-- with an event within it or followed event-free to it (persons censored earlier are left out and
-- counted in n_censored_early). It is a descriptive check, not a substitute for the calibration metrics.
-- config: view
-- A view, not a table: the deciles are computed at query time over every prediction joined to the cohort
-- (millions of rows at scale); copy this SQL and add a where clause to restrict it (one site, one model).
with scored as (
    select
        p.outcome,
        p.person_key,
        p.risk,
        p.horizon_years,
        case p.outcome when 'hip' then c.time_hip_years else c.time_mof_years end as time_years,
        case p.outcome when 'hip' then c.is_event_hip else c.is_event_mof end as is_event
    from marts.predictions p
    join marts.cohort c using (person_key)
    where p.risk is not null
),

-- Decile cut points per outcome (quantiles of predicted risk); a person's decile is 1 + the number of cut
-- points below their risk. Deterministic, and a linear pass instead of a sort of every prediction.
cuts as (
    select outcome, quantile_cont(risk, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) as q
    from scored
    group by outcome
),

ranked as (
    select
        s.*,
        1 + (s.risk > c.q[1])::int + (s.risk > c.q[2])::int + (s.risk > c.q[3])::int + (s.risk > c.q[4])::int
          + (s.risk > c.q[5])::int + (s.risk > c.q[6])::int + (s.risk > c.q[7])::int + (s.risk > c.q[8])::int
          + (s.risk > c.q[9])::int as risk_decile
    from scored s
    join cuts c using (outcome)
),

classified as (
    select *,
        coalesce(is_event and time_years <= horizon_years, false) as is_event_in_horizon,
        coalesce(time_years >= horizon_years, false) or coalesce(is_event and time_years <= horizon_years, false)
            as is_known_at_horizon
    from ranked
),

final as (
    select
        outcome,
        risk_decile,
        count(*) as n_persons,
        avg(risk) as mean_predicted_risk,
        sum(case when is_event_in_horizon then 1 else 0 end) as n_events,
        sum(case when is_known_at_horizon then 0 else 1 end) as n_censored_early,
        sum(case when is_event_in_horizon then 1 else 0 end)::double
            / nullif(sum(case when is_known_at_horizon then 1 else 0 end), 0) as observed_risk
    from classified
    group by outcome, risk_decile
)

select * from final
