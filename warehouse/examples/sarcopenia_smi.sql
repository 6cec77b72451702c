-- Sarcopenia by skeletal muscle index: SMI = L3 muscle area / height^2 (cm2/m2), height from the clinical
-- record (closest record to the CT); low SMI by sex-specific cut-offs (men < 52.4, women < 38.5).
-- Source: marts.sarcopenia.
select
    sex,
    count(*) as n_persons,
    count(*) filter (where is_low_smi) as n_low_smi,
    round(100.0 * count(*) filter (where is_low_smi) / count(*), 1) as low_smi_pct,
    round(avg(smi_cm2_m2), 1) as mean_smi_cm2_m2,
    round(avg(muscle_area_l3_cm2), 1) as mean_muscle_area_l3_cm2,
    round(avg(height_cm), 1) as mean_height_cm
from sarcopenia
group by sex
order by sex
