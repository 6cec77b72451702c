-- l1_density: each person's opportunistic L1 trabecular attenuation from CT, with age band and sex.
-- grain: one row per person with at least one measured L1 (their latest non-contrast CT, else latest CT)
-- Thresholds (120 kVp, non-contrast; Pickhardt 2013): <=160 HU ~90% sensitive and <=110 HU >90% specific
-- for DXA osteoporosis; <100 HU is the commonly reported "likely osteoporotic" cut.
with l1 as (
    select *
    from staging.stg_extract__vertebra_measurements
    where level = 'L1' and trabecular_hu is not null
    qualify row_number() over (partition by series_instance_uid order by extractor_version desc) = 1
),

joined as (
    select
        s.person_key,
        s.series_instance_uid,
        s.study_date,
        s.age_at_study_years,
        s.sex,
        l1.trabecular_hu,
        l1.vbmd_mg_cm3,
        coalesce(l1.is_contrast, s.has_contrast, false) as is_contrast,
        l1.kvp_kv
    from l1
    join staging.stg_dicom__series s using (series_instance_uid)
    where s.person_key is not null
),

latest as (
    select *
    from joined
    qualify row_number() over (
        partition by person_key order by is_contrast, study_date desc nulls last, series_instance_uid
    ) = 1
),

final as (
    select
        person_key,
        series_instance_uid,
        study_date,
        age_at_study_years,
        case
            when age_at_study_years is null then 'unknown'
            when age_at_study_years < 50 then '<50'
            when age_at_study_years < 60 then '50-59'
            when age_at_study_years < 70 then '60-69'
            when age_at_study_years < 80 then '70-79'
            else '80+'
        end as age_band,
        sex,
        trabecular_hu as l1_trabecular_hu,
        vbmd_mg_cm3 as l1_vbmd_mg_cm3,
        is_contrast,
        kvp_kv,
        trabecular_hu < 100 as is_below_100_hu,
        trabecular_hu <= 110 as is_at_most_110_hu,
        trabecular_hu <= 160 as is_at_most_160_hu
    from latest
)

select * from final
