"""The DICOM JSON model (PS3.18 Annex F) of a header, without bulk data, pixel data or identifiers.

Left out, at every nesting level:

- pixel data and every binary value (VR OB, OD, OF, OL, OV, OW, UN): bulk data, and opaque;
- private elements (odd groups) and group lengths: vendors hide names and IDs in private tags;
- every person name (VR PN: patient, physicians, operators);
- the identifiers and contact data in :data:`PHI_KEYWORDS` (PatientID, birth date, addresses, other IDs,
  accession number, ...). ``tasks.dicom.header`` keeps a pseudonym (person_key) and the age at study instead.

Two builders give the same JSON: :func:`elements_to_json` (fast path, raw bytes) and
:func:`dataset_to_json` (pydicom, the reference).
"""

from __future__ import annotations

import json
import math
import struct
from functools import lru_cache
from itertools import islice
from operator import lt
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from tasks.dicom.fastheader import BINARY_VRS, NUMERIC_FMT, NUMERIC_SIZE, Elements, FastHeader, decode_strings

PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
    "PatientTelephoneNumbers", "PatientTelecomInformation", "MilitaryRank", "BranchOfService",
    "MedicalRecordLocator", "CountryOfResidence", "RegionOfResidence", "PatientInsurancePlanCodeSequence",
    "PatientPrimaryLanguageCodeSequence", "ResponsiblePerson", "ResponsibleOrganization", "PatientComments",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyID", "AdmissionID", "IssuerOfAdmissionIDSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "InstitutionAddress",
    "PersonAddress", "PersonTelephoneNumbers", "PersonTelecomInformation", "PatientAge",
    "RequestingPhysician", "PerformedProcedureStepID", "RequestedProcedureID", "ScheduledProcedureStepID",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest",
    "ReferencedPatientSequence", "ReferencedPatientPhotoSequence", "CurrentPatientLocation",
    "PatientInstitutionResidence", "EthnicGroup", "PregnancyStatus", "LastMenstrualDate",
    "ContentCreatorName", "DeviceSerialNumber", "StationName",
)
PHI_TAGS: frozenset[int] = frozenset(t for t in (tag_for_keyword(k) for k in PHI_KEYWORDS) if t is not None)
_ALWAYS_SKIP = BINARY_VRS | {"PN"}


def _keep(tag: int, vr: str) -> bool:
    return not (tag >> 16 & 1 or tag & 0xFFFF == 0 or vr in _ALWAYS_SKIP or tag in PHI_TAGS)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _num_or_str(s: str, integer: bool) -> Any:
    try:
        f = float(s)
    except ValueError:
        return s
    if integer and f.is_integer():
        return int(f)
    return _finite(f)


def _strings_json(vr: str, vals: list[str]) -> list[Any]:
    if vr == "DS":
        return [None if s.strip() == "" else _num_or_str(s.strip(), False) for s in vals]
    if vr == "IS":
        return [None if s.strip() == "" else _num_or_str(s.strip(), True) for s in vals]
    return [s if s != "" else None for s in vals]


_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})


def elements_to_json(elements: Elements, encoding: str, pixel_rep: int | None = None) -> dict[str, Any]:
    """Annex F dict of fast-path ``elements`` (see the module docstring for what is left out)."""
    out: dict[str, Any] = {}
    pr = elements.get(0x00280103)
    if pr is not None and pr[0] == "US" and len(pr[1]) == 2:
        pixel_rep = int.from_bytes(pr[1], "little")
    for tag in sorted(elements):
        vr, raw = elements[tag]
        if vr == "US or SS":
            vr = "SS" if pixel_rep == 1 and tag not in _LUT_DESCRIPTORS else "US"
        if not _keep(tag, vr):
            continue
        out[f"{tag:08X}"] = _entry(vr, raw, encoding, pixel_rep)
    return out


def _entry(vr: str, raw: Any, encoding: str, pixel_rep: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"vr": vr}
    if vr == "SQ":
        items = [elements_to_json(item, encoding, pixel_rep) for item in raw]
        if items:
            entry["Value"] = items
    elif vr in NUMERIC_FMT:
        size = NUMERIC_SIZE[vr]
        vals = struct.unpack_from(f"<{len(raw) // size}{NUMERIC_FMT[vr]}", raw)
        if vals:
            entry["Value"] = [_finite(v) if isinstance(v, float) else v for v in vals]
    elif vr == "AT":
        vals = struct.unpack_from(f"<{len(raw) // 2}H", raw)
        if vals:
            entry["Value"] = [f"{vals[i]:04X}{vals[i + 1]:04X}" for i in range(0, len(vals) - 1, 2)]
    else:
        svals = decode_strings(vr, raw, encoding)
        if svals:
            entry["Value"] = _strings_json(vr, svals)
    return entry


@lru_cache(maxsize=8192)
def _prefix(tag: int, vr: str) -> str | None:
    """``"GGGGEEEE":{"vr":"VR"`` (memoised by tag and VR), or ``None`` when the element is left out."""
    return f'"{tag:08X}":{{"vr":"{vr}"' if _keep(tag, vr) else None


def _number_texts(parts: list[str], integer: bool) -> str:
    """JSON array body of DS/IS strings: what ``_ENCODE(_strings_json(vr, parts))`` writes, directly."""
    out = []
    for s in parts:
        s = s.strip()
        if not s:
            out.append("null")
            continue
        try:
            f = float(s)
        except ValueError:
            out.append(_ENCODE_STR(s))
            continue
        if integer and f.is_integer():
            out.append(repr(int(f)))
        else:
            out.append(repr(f) if math.isfinite(f) else "null")  # float.__repr__, as json writes it
    return ",".join(out)


def _fragment(tag: int, vr: str, raw: Any, encoding: str, pixel_rep: int | None) -> str:
    """``"GGGGEEEE":{...}`` for one element, or ``""`` when it is left out."""
    if vr == "US or SS":
        vr = "SS" if pixel_rep == 1 and tag not in _LUT_DESCRIPTORS else "US"
    prefix = _prefix(tag, vr)
    if prefix is None:
        return ""
    if vr in _NUMBER_TEXT and isinstance(raw, bytes):  # decode_strings' DS/IS rule, then the JSON numbers
        parts = raw.decode("latin_1").strip().rstrip(" \0").split("\\")
        if parts == [""]:
            return prefix + "}"
        return prefix + ',"Value":[' + _number_texts(parts, vr == "IS") + "]}"
    if vr in _TEXT_LIKE:  # UIDs, codes, dates, text: the text is built directly
        vals = decode_strings(vr, raw, encoding)
        if not vals:
            return prefix + "}"
        return prefix + ',"Value":[' + ",".join([_ENCODE_STR(v) if v != "" else "null" for v in vals]) + "]}"
    return f'"{tag:08X}":' + _ENCODE(_entry(vr, raw, encoding, pixel_rep))


_NUMBER_TEXT = frozenset({"DS", "IS"})
_TEXT_LIKE = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR",
                        "UT"})


_MAX_FRAGMENTS = 20_000  # per context; most hits are series-level elements of the current series


_BY_ELEMENT: dict[tuple[str, int | None], dict[bytes, str]] = {}


def _memo(encoding: str, pixel_rep: int | None) -> dict[bytes, str]:
    memo = _BY_ELEMENT.get((encoding, pixel_rep))
    if memo is None or len(memo) > _MAX_FRAGMENTS:
        memo = _BY_ELEMENT[(encoding, pixel_rep)] = {}
    return memo


def _fragments(tags: list[int], wholes: list[bytes], elements: Elements, encoding: str, pixel_rep: int | None,
               memo: dict[bytes, str]) -> list[str]:
    found = list(map(memo.get, wholes))
    if None not in found:
        return found  # type: ignore[return-value]
    frags: list[str] = []
    for tag, whole, frag in zip(tags, wholes, found, strict=True):
        if frag is None:
            vr, raw = elements[tag]
            frag = memo[whole] = _fragment(tag, vr, raw, encoding, pixel_rep)
        frags.append(frag)
    return frags


def header_json_text(fh: FastHeader) -> str:
    """DICOM JSON text of a fast-path header. Equal to :func:`elements_to_json`.

    Element fragments are memoised by each element's whole bytes (tag, VR, length and value); for a
    file that matched a series layout (``fh.layout``) the text of the static elements between the
    varying ones is built once per layout, and only the varying elements are converted.
    """
    elements = fh.elements
    pixel_rep = None
    if fh.implicit:  # only implicit files have 'US or SS' elements, resolved by PixelRepresentation
        pr = elements.get(0x00280103)
        pixel_rep = int.from_bytes(pr[1], "little") if pr is not None and pr[0] == "US" and len(pr[1]) == 2 else None
    tags, wholes = fh.tags, fh.wholes
    lay = fh.layout
    if lay is not None and lay.ordered and fh.varied is not None:
        ck = ("json", fh.encoding, pixel_rep)
        segs = lay.cache.get(ck)
        if segs is None:
            frags = _fragments(lay.tags, lay.wholes, lay.elements, fh.encoding, pixel_rep, _memo(fh.encoding, pixel_rep))
            bounds = [-1, *(j for j, _ in fh.varied), len(tags)]
            segs = lay.cache[ck] = [",".join(filter(None, frags[a + 1 : b])) for a, b in zip(bounds, bounds[1:],
                                                                                               strict=False)]
        pieces = [segs[0]]
        for (_, tag), seg in zip(fh.varied, islice(segs, 1, None), strict=True):
            vr, raw = elements[tag]
            pieces.append(_fragment(tag, vr, raw, fh.encoding, pixel_rep))
            pieces.append(seg)
        return "{" + ",".join(filter(None, pieces)) + "}"
    if not all(map(lt, tags, islice(tags, 1, None))):  # out of order or repeated: the plain way
        return dumps(elements_to_json(elements, fh.encoding, pixel_rep))
    frags = _fragments(tags, wholes, elements, fh.encoding, pixel_rep, _memo(fh.encoding, pixel_rep))
    return "{" + ",".join(filter(None, frags)) + "}"


def _py_value(vr: str, value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    seq = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if vr in NUMERIC_FMT:
        return [_finite(float(v)) if isinstance(v, float) else int(v) for v in seq]
    if vr == "AT":
        return [f"{int(v):08X}" for v in seq]
    if vr in ("DS", "IS"):
        return _strings_json(vr, [str(v) if not hasattr(v, "original_string") or v.original_string is None
                                   else v.original_string for v in seq])
    return _strings_json(vr, [str(v) for v in seq])


def dataset_to_json(ds: Dataset) -> dict[str, Any]:
    """Annex F dict of a pydicom dataset, with the same exclusions as :func:`elements_to_json`."""
    out: dict[str, Any] = {}
    for elem in ds:
        tag = int(elem.tag)
        vr = elem.VR
        if " or " in vr:
            vr = "UN"
        if not _keep(tag, vr):
            continue
        entry: dict[str, Any] = {"vr": vr}
        if vr == "SQ":
            value = elem.value
            items = [dataset_to_json(item) for item in (value if isinstance(value, Sequence) else [])]
            if items:
                entry["Value"] = items
        else:
            vals = _py_value(vr, elem.value)
            if vals:
                entry["Value"] = vals
        out[f"{tag:08X}"] = entry
    return out


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # built once: dumps() with
# options builds a new encoder on every call
_ENCODE_STR = json.encoder.encode_basestring  # what that encoder writes for a str (ensure_ascii=False)


def dumps(obj: dict[str, Any]) -> str:
    """Compact JSON text (the ``dicom_json`` column)."""
    return _ENCODE(obj)
