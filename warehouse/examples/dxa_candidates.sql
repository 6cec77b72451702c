-- Persons whom opportunistic CT suggests for DXA: latest L1 <= 160 HU at age >= 50 and no DXA study from
-- two years before to one year after that CT; high priority when L1 <= 110 HU.
-- Source: marts.dxa_candidates (rule and thresholds documented in warehouse/sql/marts/dxa_candidates.sql).
select
    priority,
    person_key,
    ct_study_date,
    round(age_at_study_years, 0) as age_years,
    sex,
    round(l1_trabecular_hu, 1) as l1_trabecular_hu,
    is_contrast
from dxa_candidates
order by priority, l1_trabecular_hu, person_key
