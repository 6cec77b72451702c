-- stg_omop__heights: body height records from the clinical record (OMOP measurement via the phenotypes).
-- grain: one row per person and height record
with source as (
    select * from silver.risk_factors
    where factor = 'height_cm'
),

final as (
    select
        person_key,
        cast(start_date as date) as measured_date,
        cast(value_number as double) as height_cm
    from source
    where value_number is not null
)

select * from final
