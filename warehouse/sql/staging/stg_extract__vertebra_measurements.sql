-- stg_extract__vertebra_measurements: CT trabecular density per level, renamed and cast.
-- grain: one row per series, vertebral level and extractor version
with source as (
    select * from silver.vertebra_measurements
),

final as (
    select
        series_instance_uid,
        study_instance_uid,
        level,
        extractor_version,
        cast(trabecular_hu_mean as double) as trabecular_hu,
        cast(vbmd_mg_cm3 as double) as vbmd_mg_cm3,
        l1_category,
        is_contrast,
        cast(kvp as double) as kvp_kv,
        cast(confidence as double) as confidence
    from source
)

select * from final
