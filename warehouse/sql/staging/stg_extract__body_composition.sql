-- stg_extract__body_composition: muscle and adipose areas per CT slice level, renamed and cast.
-- grain: one row per series, vertebral level and extractor version
with source as (
    select * from silver.body_composition
),

final as (
    select
        series_instance_uid,
        study_instance_uid,
        level,
        extractor_version,
        cast(muscle_area_cm2 as double) as muscle_area_cm2,
        cast(muscle_hu_mean as double) as muscle_hu,
        cast(imat_area_cm2 as double) as imat_area_cm2,
        cast(vat_area_cm2 as double) as vat_area_cm2,
        cast(sat_area_cm2 as double) as sat_area_cm2
    from source
)

select * from final
