-- Predicted risk deciles against observed fractures, per outcome (production model predictions).
-- observed_risk: events within the horizon / persons whose status at the horizon is known (complete case);
-- n_censored_early counts persons left out. Compare mean_predicted_risk with observed_risk per decile.
-- Source: marts.risk_deciles (over marts.predictions and marts.cohort).
select
    outcome,
    risk_decile,
    n_persons,
    round(mean_predicted_risk, 4) as mean_predicted_risk,
    n_events,
    n_censored_early,
    round(observed_risk, 4) as observed_risk
from risk_deciles
order by outcome, risk_decile
