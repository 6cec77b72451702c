-- sarcopenia: skeletal muscle index at L3 from CT with height from the clinical record.
-- grain: one row per person with an L3 muscle area and a height record (their latest such CT)
-- SMI = L3 skeletal muscle area / height^2 (cm2/m2); low SMI: men < 52.4, women < 38.5 (Prado 2008).
-- Height: the record closest in time to the CT.
with l3 as (
    select *
    from staging.stg_extract__body_composition
    where level = 'L3' and muscle_area_cm2 is not null
    qualify row_number() over (partition by series_instance_uid order by extractor_version desc) = 1
),

ct as (
    select s.person_key, s.series_instance_uid, s.study_date, s.age_at_study_years, s.sex,
           l3.muscle_area_cm2, l3.muscle_hu
    from l3
    join staging.stg_dicom__series s using (series_instance_uid)
    where s.person_key is not null
    qualify row_number() over (partition by s.person_key order by s.study_date desc nulls last,
                                                               s.series_instance_uid) = 1
),

with_height as (
    select ct.*, h.height_cm, abs(datediff('day', h.measured_date, ct.study_date)) as height_gap_days
    from ct
    join staging.stg_omop__heights h using (person_key)
    where h.height_cm > 0
    qualify row_number() over (partition by ct.person_key
                               order by abs(datediff('day', h.measured_date, ct.study_date)), h.measured_date) = 1
),

final as (
    select
        person_key,
        series_instance_uid,
        study_date,
        age_at_study_years,
        sex,
        muscle_area_cm2 as muscle_area_l3_cm2,
        muscle_hu as muscle_hu_l3,
        height_cm,
        height_gap_days,
        muscle_area_cm2 / ((height_cm / 100.0) * (height_cm / 100.0)) as smi_cm2_m2,
        case
            when sex = 'M' then muscle_area_cm2 / ((height_cm / 100.0) * (height_cm / 100.0)) < 52.4
            when sex = 'F' then muscle_area_cm2 / ((height_cm / 100.0) * (height_cm / 100.0)) < 38.5
        end as is_low_smi
    from with_height
)

select * from final
