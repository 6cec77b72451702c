-- Prevalence of L1 trabecular attenuation < 100 HU, by age band and sex.
-- One person counts once: their latest non-contrast CT with a measured L1 (else their latest CT).
-- Source: marts.l1_density. Contrast-enhanced scans read roughly 10-25 HU higher; filter
-- `where not is_contrast` to restrict to non-contrast scans.
select
    age_band,
    sex,
    count(*) as n_persons,
    count(*) filter (where is_below_100_hu) as n_below_100_hu,
    round(100.0 * count(*) filter (where is_below_100_hu) / count(*), 1) as prevalence_pct,
    round(median(l1_trabecular_hu), 1) as median_l1_hu
from l1_density
group by age_band, sex
order by age_band, sex
