-- unrecognised_vertebral_fracture: persons whose imaging shows a moderate or severe vertebral fracture
-- (Genant grade >= 2) with no vertebral fracture diagnosis in the clinical record before that image.
-- grain: one row per person (at the first image showing a grade >= 2 fracture)
-- Reads silver.vertebral_fractures (per series and level), bronze.series and bronze.studies (person and
-- study date of each series) and silver.fracture_events (site 'vertebral').
-- A diagnosis recorded after the image does not make the fracture recognised at the time of the image; it
-- is reported in first_vf_diagnosis_after_date / days_image_to_diagnosis. thick_slices: a fractured level
-- of that image was measured on CT slices thicker than 3 mm (qc flag 'thick_slices'), where grades are
-- less accurate than on thin slices (README, benchmarks): worth a radiologist's look before outreach.
with fractures as (
    select
        series_instance_uid,
        level,
        genant_grade,
        fracture_type,
        spinal_deformity_index,
        source,
        coalesce(list_contains(string_split(qc_flags, ','), 'thick_slices'), false) as thick_slices
    from silver.vertebral_fractures
    where genant_grade >= 2
),

imaged as (
    select
        coalesce(st.person_key, se.person_key) as person_key,
        cast(coalesce(st.study_date, se.study_date) as date) as image_date,
        se.study_instance_uid,
        f.series_instance_uid,
        f.level,
        f.genant_grade,
        f.fracture_type,
        f.spinal_deformity_index,
        f.source,
        f.thick_slices
    from fractures f
    join bronze.series se using (series_instance_uid)
    left join bronze.studies st on st.study_instance_uid = se.study_instance_uid
    where coalesce(st.person_key, se.person_key) is not null
      and coalesce(st.study_date, se.study_date) is not null
),

first_image as (
    -- the earliest series with a grade >= 2 fracture per person (ties: the higher deformity index)
    select *
    from (
        select
            person_key,
            image_date,
            study_instance_uid,
            series_instance_uid,
            source,
            spinal_deformity_index,
            row_number() over (
                partition by person_key
                order by image_date, spinal_deformity_index desc, series_instance_uid
            ) as rn
        from (select distinct person_key, image_date, study_instance_uid, series_instance_uid, source,
                     spinal_deformity_index from imaged)
    )
    where rn = 1
),

levels as (
    select
        i.person_key,
        max(i.genant_grade) as max_genant_grade,
        count(*) as n_fractured_levels,
        string_agg(i.level || ':' || i.fracture_type, ',' order by i.level) as fractured_levels,
        bool_or(i.thick_slices) as thick_slices
    from imaged i
    join first_image fi using (person_key, series_instance_uid)
    group by i.person_key
),

vertebral_dx as (
    select person_key, event_date
    from silver.fracture_events
    where site = 'vertebral'
),

final as (
    select
        fi.person_key,
        fi.image_date,
        fi.study_instance_uid,
        fi.series_instance_uid,
        fi.source,
        l.max_genant_grade,
        l.n_fractured_levels,
        l.fractured_levels,
        fi.spinal_deformity_index,
        l.thick_slices,
        (select min(d.event_date) from vertebral_dx d
          where d.person_key = fi.person_key and d.event_date > fi.image_date) as first_vf_diagnosis_after_date,
        datediff('day', fi.image_date,
                 (select min(d.event_date) from vertebral_dx d
                   where d.person_key = fi.person_key and d.event_date > fi.image_date))
            as days_image_to_diagnosis
    from first_image fi
    join levels l using (person_key)
    where not exists (
        select 1 from vertebral_dx d
        where d.person_key = fi.person_key and d.event_date <= fi.image_date
    )
)

select * from final
