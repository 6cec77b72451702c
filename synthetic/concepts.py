"""Every OMOP concept the synthetic OMOP extract uses, in one place.

Concept ids are OMOP standard concept ids where they are well known (gender, visit, type, the common
vital-sign measurements and units, rheumatoid arthritis, RxNorm ingredients); ``verified=True`` marks those.
For the rest the extract uses *site-local* concepts (OMOP reserves ids >= 2,000,000,000 for a site's own
vocabulary) and the real source code in ``*_source_value`` (ICD-10-CM, LOINC, CPT-4, RxNorm, SNOMED);
a phenotype should match those source codes. Check ids against Athena before relying on them elsewhere.

The phenotypes of ``tasks/clinical/phenotypes/*.yaml`` list the same ids and codes; a test keeps the two in
step (tests/synthetic/test_omop.py).
"""

from __future__ import annotations

from dataclasses import dataclass

LOCAL = 2_000_000_000


@dataclass(frozen=True)
class Concept:
    """One concept: OMOP id, vocabulary and code of the source value, name, and whether the id is verified."""

    concept_id: int
    vocabulary: str
    code: str
    name: str
    verified: bool = False


# Person, visit and record types.
MALE = Concept(8507, "Gender", "M", "MALE", True)
FEMALE = Concept(8532, "Gender", "F", "FEMALE", True)
INPATIENT = Concept(9201, "Visit", "IP", "Inpatient Visit", True)
OUTPATIENT = Concept(9202, "Visit", "OP", "Outpatient Visit", True)
EMERGENCY = Concept(9203, "Visit", "ER", "Emergency Room Visit", True)
EHR = Concept(32817, "Type Concept", "OMOP4976890", "EHR", True)

# Measurements and units.
HEIGHT = Concept(3036277, "LOINC", "8302-2", "Body height", True)
WEIGHT = Concept(3025315, "LOINC", "29463-7", "Body weight", True)
CM = Concept(8582, "UCUM", "cm", "centimeter", True)
KG = Concept(9529, "UCUM", "kg", "kilogram", True)
FN_BMD = Concept(LOCAL + 101, "LOCAL", "DXA_FN_BMD", "DXA femoral neck bone mineral density")
FN_TSCORE = Concept(LOCAL + 102, "LOCAL", "DXA_FN_TSCORE", "DXA femoral neck T-score")
G_CM2 = Concept(LOCAL + 103, "UCUM", "g/cm2", "gram per square centimeter")

# Observations.
SMOKING_STATUS = Concept(LOCAL + 201, "LOINC", "72166-2", "Tobacco smoking status")
CURRENT_SMOKER = Concept(LOCAL + 202, "SNOMED", "449868002", "Smokes tobacco daily")
FORMER_SMOKER = Concept(LOCAL + 203, "SNOMED", "8517006", "Ex-smoker")
NEVER_SMOKER = Concept(LOCAL + 204, "SNOMED", "266919005", "Never smoked tobacco")
ALCOHOL_UNITS = Concept(LOCAL + 205, "LOCAL", "ALC_UNITS_DAY", "Alcohol intake, units per day")
PARENTAL_HIP = Concept(LOCAL + 206, "LOCAL", "FH_PARENT_HIP_FX", "Family history: parent had a hip fracture")
HISTORY_OF_FALLING = Concept(LOCAL + 207, "ICD10CM", "Z91.81", "History of falling")
CAR_DRIVER_COLLISION = Concept(
    LOCAL + 208, "ICD10CM", "V43.52XA", "Car driver injured in collision with other car in traffic accident"
)
FALL_FROM_BUILDING = Concept(LOCAL + 209, "ICD10CM", "W13.9XXA", "Fall from, out of or through building")
FALL_SAME_LEVEL = Concept(LOCAL + 210, "ICD10CM", "W18.30XA", "Fall on same level, unspecified")

# Conditions: fractures (ICD-10-CM source codes; 7th character A = initial encounter, D = subsequent).
HIP_FX = Concept(LOCAL + 301, "ICD10CM", "S72.001A", "Fracture of unspecified part of neck of right femur")
VERT_FX_THORACIC = Concept(LOCAL + 302, "ICD10CM", "S22.000A", "Wedge compression fracture of thoracic vertebra")
VERT_FX_LUMBAR = Concept(LOCAL + 303, "ICD10CM", "S32.000A", "Wedge compression fracture of lumbar vertebra")
VERT_FX_OSTEOPOROTIC = Concept(
    LOCAL + 304, "ICD10CM", "M80.08XA", "Age-related osteoporosis with current pathological fracture, vertebra"
)
VERT_COLLAPSE = Concept(LOCAL + 305, "ICD10CM", "M48.56XA", "Collapsed vertebra, lumbar region")
FOREARM_FX = Concept(LOCAL + 306, "ICD10CM", "S52.501A", "Fracture of the lower end of right radius")
HUMERUS_FX = Concept(LOCAL + 307, "ICD10CM", "S42.201A", "Fracture of upper end of right humerus")
ANKLE_FX = Concept(LOCAL + 308, "ICD10CM", "S82.891A", "Other fracture of right lower leg")

# Conditions: risk factors and background.
RHEUMATOID_ARTHRITIS = Concept(80809, "ICD10CM", "M06.9", "Rheumatoid arthritis", True)
OSTEOPOROSIS = Concept(80502, "ICD10CM", "M81.0", "Osteoporosis", True)
TYPE1_DIABETES = Concept(201254, "ICD10CM", "E10.9", "Type 1 diabetes mellitus", True)
TYPE2_DIABETES = Concept(201826, "ICD10CM", "E11.9", "Type 2 diabetes mellitus", True)
HYPERTENSION = Concept(320128, "ICD10CM", "I10", "Essential hypertension", True)
HYPERTHYROIDISM = Concept(LOCAL + 401, "ICD10CM", "E05.90", "Thyrotoxicosis, unspecified")
CELIAC = Concept(LOCAL + 402, "ICD10CM", "K90.0", "Celiac disease")
PREMATURE_MENOPAUSE = Concept(LOCAL + 403, "ICD10CM", "E28.310", "Symptomatic premature menopause")
CHRONIC_LIVER = Concept(LOCAL + 404, "ICD10CM", "K74.60", "Unspecified cirrhosis of liver")
OSTEOGENESIS_IMPERFECTA = Concept(LOCAL + 405, "ICD10CM", "Q78.0", "Osteogenesis imperfecta")
SECONDARY_CAUSES = (TYPE1_DIABETES, HYPERTHYROIDISM, CELIAC, PREMATURE_MENOPAUSE, CHRONIC_LIVER,
                    OSTEOGENESIS_IMPERFECTA)

# Drugs: RxNorm ingredients (source value is the RxCUI).
PREDNISONE = Concept(1551099, "RxNorm", "8640", "prednisone", True)
PREDNISOLONE = Concept(1550557, "RxNorm", "8638", "prednisolone", True)
METHYLPREDNISOLONE = Concept(1506270, "RxNorm", "6902", "methylprednisolone", True)
ALENDRONATE = Concept(1557272, "RxNorm", "46041", "alendronate", True)
DENOSUMAB = Concept(40222444, "RxNorm", "993449", "denosumab", True)
ZOLEDRONIC_ACID = Concept(1524674, "RxNorm", "77655", "zoledronic acid", True)
GLUCOCORTICOIDS = (PREDNISONE, PREDNISOLONE, METHYLPREDNISOLONE)
OSTEOPOROSIS_DRUGS = (ALENDRONATE, DENOSUMAB, ZOLEDRONIC_ACID)

# Procedures (CPT-4 source codes).
IMAGING_PROCEDURES: dict[str, Concept] = {
    "ct_abdomen": Concept(LOCAL + 501, "CPT4", "74150", "CT abdomen without contrast"),
    "ct_chest": Concept(LOCAL + 502, "CPT4", "71250", "CT thorax without contrast"),
    "dx_spine": Concept(LOCAL + 503, "CPT4", "72100", "Radiologic examination, spine, lumbosacral; 2 or 3 views"),
    "dxa": Concept(LOCAL + 504, "CPT4", "77080", "DXA bone density study, axial skeleton"),
    "mr": Concept(LOCAL + 505, "CPT4", "72148", "MRI lumbar spine without contrast"),
}
HIP_ARTHROPLASTY = Concept(LOCAL + 506, "CPT4", "27236", "Open treatment of femoral neck fracture, prosthetic")

FRACTURE_BY_SITE: dict[str, Concept] = {
    "hip": HIP_FX, "forearm": FOREARM_FX, "humerus": HUMERUS_FX, "ankle": ANKLE_FX,
}
HIGH_TRAUMA_CAUSES = (CAR_DRIVER_COLLISION, FALL_FROM_BUILDING)
