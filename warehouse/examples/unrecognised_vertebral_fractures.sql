-- Unrecognised vertebral fractures: moderate or severe fractures found on imaging that the clinical
-- record does not know about (no vertebral fracture diagnosis coded).
-- Source: marts.unrecognised_vertebral_fracture (written by the fragility model in
-- warehouse/sql/marts/unrecognised_vertebral_fracture.sql; see docs/data_dictionary.md for its columns).
select *
from unrecognised_vertebral_fracture
