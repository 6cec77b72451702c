-- dxa_candidates: persons whom opportunistic CT suggests for DXA.
-- grain: one row per suggested person
-- Rule: latest L1 <= 160 HU (the ~90% sensitive threshold), age >= 50 at that CT, and no DXA study
-- from two years before to one year after it. priority 'high' when L1 <= 110 HU (>90% specific).
with l1 as (
    select * from marts.l1_density
),

dxa as (
    select person_key, study_date
    from staging.stg_dicom__series
    where is_dxa and person_key is not null
),

candidates as (
    select l1.*
    from l1
    where l1.is_at_most_160_hu
      and l1.age_at_study_years >= 50
      and not exists (
          select 1 from dxa
          where dxa.person_key = l1.person_key
            and dxa.study_date between l1.study_date - interval 730 day and l1.study_date + interval 365 day
      )
),

final as (
    select
        person_key,
        series_instance_uid as ct_series_instance_uid,
        study_date as ct_study_date,
        age_at_study_years,
        sex,
        l1_trabecular_hu,
        is_contrast,
        case when is_at_most_110_hu then 'high' else 'moderate' end as priority
    from candidates
)

select * from final
