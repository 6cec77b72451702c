-- stg_dicom__series: DICOM series from ingest, renamed and cast for the marts.
-- grain: one row per DICOM series (series_instance_uid)
with source as (
    select * from bronze.series
),

final as (
    select
        series_instance_uid,
        study_instance_uid,
        person_key,
        cast(study_date as date) as study_date,
        cast(age_at_study_years as double) as age_at_study_years,
        upper(patient_sex) as sex,
        modality,
        cast(kvp as double) as kvp_kv,
        has_contrast,
        is_dxa,
        is_eligible_ct_spine
    from source
)

select * from final
