"""One row per DICOM instance from its header: promoted typed columns plus the rest as DICOM JSON.

:func:`parse_header` tries the fast reader (``tasks.dicom.fastheader``) and falls back to pydicom, the
reference; :func:`parse_header_pydicom` is the reference alone. Both build the row with the same
:func:`build_row` from a :class:`HeaderView`, so a promoted value can only differ if the two readers
decode an element differently (tested on every corpus). Files that cannot be indexed raise
:class:`HeaderError` with a :class:`QuarantineReason`.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from datetime import date, time
from typing import Any, Protocol

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import AllTransferSyntaxes

from schemas.enums import StrValueEnum
from tasks.dicom import dicom_json
from tasks.dicom.fastheader import FastHeader, FastPathUnsupported, Truncated, check_pixel_data, read_fast
from tasks.privacy import age_years, person_key

_LOG = logging.getLogger("pydicom")
KNOWN_SYNTAXES = frozenset(str(u) for u in AllTransferSyntaxes)


class QuarantineReason(StrValueEnum):
    """Why a file was not indexed; accepts the member or its string value."""

    NOT_DICOM = "not_dicom"
    TRUNCATED = "truncated"
    MISSING_TAGS = "missing_tags"
    UNSUPPORTED_SYNTAX = "unsupported_syntax"
    UNREADABLE = "unreadable"
    PARSE_ERROR = "parse_error"


class HeaderError(Exception):
    """A file that cannot be indexed, with the reason class for the quarantine table."""

    def __init__(self, reason: QuarantineReason | str, message: str) -> None:
        super().__init__(message)
        self.reason = QuarantineReason(reason)
        self.message = message


class HeaderView(Protocol):
    """Decoded element values by tag; ``None`` when absent or empty."""

    def strings(self, tag: int) -> list[str] | None: ...

    def numbers(self, tag: int) -> list[float] | None: ...


# (column, tag, kind): kind in uid | text | strings | float | floats | int | date | time
PROMOTED: tuple[tuple[str, int, str], ...] = (
    ("sop_class_uid", 0x00080016, "uid"),
    ("sop_instance_uid", 0x00080018, "uid"),
    ("study_instance_uid", 0x0020000D, "uid"),
    ("series_instance_uid", 0x0020000E, "uid"),
    ("frame_of_reference_uid", 0x00200052, "uid"),
    ("modality", 0x00080060, "text"),
    ("patient_sex", 0x00100040, "text"),
    ("study_date", 0x00080020, "date"),
    ("study_time", 0x00080030, "time"),
    ("series_date", 0x00080021, "date"),
    ("series_time", 0x00080031, "time"),
    ("acquisition_date", 0x00080022, "date"),
    ("acquisition_time", 0x00080032, "time"),
    ("study_description", 0x00081030, "text"),
    ("series_description", 0x0008103E, "text"),
    ("protocol_name", 0x00181030, "text"),
    ("body_part_examined", 0x00180015, "text"),
    ("image_type", 0x00080008, "strings"),
    ("view_position", 0x00185101, "text"),
    ("image_laterality", 0x00200062, "text"),
    ("series_number", 0x00200011, "int"),
    ("instance_number", 0x00200013, "int"),
    ("image_orientation_patient", 0x00200037, "floats"),
    ("image_position_patient", 0x00200032, "floats"),
    ("pixel_spacing_mm", 0x00280030, "floats"),
    ("imager_pixel_spacing_mm", 0x00181164, "floats"),
    ("slice_thickness_mm", 0x00180050, "float"),
    ("spacing_between_slices_mm", 0x00180088, "float"),
    ("slice_location_mm", 0x00201041, "float"),
    ("rows", 0x00280010, "int"),
    ("columns", 0x00280011, "int"),
    ("number_of_frames", 0x00280008, "int"),
    ("photometric_interpretation", 0x00280004, "text"),
    ("kvp", 0x00180060, "float"),
    ("contrast_bolus_agent", 0x00180010, "text"),
    ("convolution_kernel", 0x00181210, "text"),
    ("manufacturer", 0x00080070, "text"),
    ("manufacturer_model_name", 0x00081090, "text"),
    ("rescale_intercept", 0x00281052, "float"),
    ("rescale_slope", 0x00281053, "float"),
    ("rescale_type", 0x00281054, "text"),
)
REQUIRED = ("sop_instance_uid", "series_instance_uid", "study_instance_uid")
PATIENT_ID, ISSUER, BIRTH_DATE, PATIENT_AGE = 0x00100020, 0x00100021, 0x00100030, 0x00101010
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$")


def parse_da(s: str | None) -> date | None:
    """DICOM DA (``YYYYMMDD``, or the old ``YYYY.MM.DD``) to a date; ``None`` if not a valid date."""
    if not s:
        return None
    s = s.strip().replace(".", "")
    if len(s) != 8 or not s.isdigit():
        return None
    try:
        return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None


def parse_tm(s: str | None) -> time | None:
    """DICOM TM (``HH[MM[SS[.F{1,6}]]]``, or the old ``HH:MM:SS``) to a time; ``None`` if invalid."""
    if not s:
        return None
    s = s.strip().replace(":", "")
    main, _, frac = s.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6) or (frac and not frac.isdigit()):
        return None
    try:
        return time(int(main[:2]), int(main[2:4] or 0), min(int(main[4:6] or 0), 59),
                    int((frac[:6] + "000000")[:6]) if frac else 0)
    except ValueError:
        return None


def _age_from_as(s: str | None) -> float | None:
    m = _AGE.match(s or "")
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return round(n / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[unit], 1)


def _value(view: HeaderView, tag: int, kind: str) -> Any:
    try:
        if kind in ("float", "floats", "int"):
            nums = view.numbers(tag)
            if nums is None:
                return None
            if kind == "floats":
                return nums
            if kind == "int":
                return int(nums[0]) if float(nums[0]).is_integer() else None
            return nums[0]
        strs = view.strings(tag)
        if strs is None:
            return None
        if kind == "strings":
            return strs
        if kind == "uid":
            return strs[0] or None
        if kind == "date":
            return parse_da(strs[0])
        if kind == "time":
            return parse_tm(strs[0])
        return "\\".join(strs) or None
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
        return None


def _uid_text(raw: bytes) -> str | None:
    return raw.decode("latin_1").rstrip(" \0").split("\\")[0] or None


def _ds_floats(raw: bytes) -> list[float] | None:
    parts = raw.decode("latin_1").strip().rstrip(" \0").split("\\")
    if parts == [""]:
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def _ds_float(raw: bytes) -> float | None:
    nums = _ds_floats(raw)
    return None if nums is None else nums[0]


def _is_int(raw: bytes) -> int | None:
    nums = _ds_floats(raw)
    if nums is None:
        return None
    try:
        return int(nums[0]) if nums[0].is_integer() else None
    except OverflowError:
        return None


#: ``_value(view, tag, kind)`` for the common per-instance elements, straight from the raw bytes of a
#: (kind, VR) whose decoding does not depend on the character set (same rules, same results).
_DIRECT: dict[tuple[str, str], Any] = {
    ("uid", "UI"): _uid_text, ("floats", "DS"): _ds_floats, ("float", "DS"): _ds_float, ("int", "IS"): _is_int,
}


def _person(key: bytes, pid: str | None, issuer: str | None, default_issuer: str | None) -> str | None:
    return person_key(key, pid, issuer or default_issuer) if pid and pid.strip() else None


def _age(birth: date | None, study: date | None, patient_age: str | None) -> float | None:
    age = age_years(birth, study)
    return age if age is not None else _age_from_as(patient_age)


def build_row(view: HeaderView, *, key: bytes, default_issuer: str | None = None) -> dict[str, Any]:
    """Promoted columns, ``person_key`` and ``age_at_study_years`` from a header view.

    Notes
    -----
    Raw identifiers (PatientID, names, birth date) are read only to derive ``person_key`` and the age;
    they are not returned.
    """
    row: dict[str, Any] = {col: _value(view, tag, kind) for col, tag, kind in PROMOTED}
    row["person_key"] = _person(key, _value(view, PATIENT_ID, "text"), _value(view, ISSUER, "text"), default_issuer)
    study = row["study_date"] or row["series_date"] or row["acquisition_date"]
    row["age_at_study_years"] = _age(_value(view, BIRTH_DATE, "date"), study, _value(view, PATIENT_AGE, "text"))
    return row


#: Columns that usually differ between the instances of a series; the others are memoised together.
_PER_INSTANCE = ("sop_instance_uid", "instance_number", "image_position_patient", "slice_location_mm",
                 "acquisition_time", "acquisition_date")
_A = tuple(p for p in PROMOTED if p[0] in _PER_INSTANCE)
_B = tuple(p for p in PROMOTED if p[0] not in _PER_INSTANCE)
_B_TAGS = tuple(t for _, t, _ in _B) + (PATIENT_ID, ISSUER, BIRTH_DATE, PATIENT_AGE)
#: Tags whose change invalidates a copied row: series-level columns, and every input of the age.
_SHARED_TAGS = frozenset(_B_TAGS) | {0x00080022}
#: Row key holding the shared dict of series-level values (lets the Arrow conversion convert them once).
SERIES_PART = "_series_part"
SERIES_COLUMNS: tuple[str, ...] = tuple(c for c, _, _ in _B) + ("person_key",)
_VALUES: dict[str, list[dict[bytes, Any]]] = {}
_SERIES: dict[tuple[Any, ...], dict[str, Any]] = {}


def _series_part(fh: FastHeader, key: bytes, default_issuer: str | None) -> dict[str, Any]:
    part = {col: _value(fh, tag, kind) for col, tag, kind in _B}
    part["person_key"] = _person(key, _value(fh, PATIENT_ID, "text"), _value(fh, ISSUER, "text"), default_issuer)
    part["_birth"] = _value(fh, BIRTH_DATE, "date")
    part["_age"] = _value(fh, PATIENT_AGE, "text")
    return part


def reset_memos() -> None:
    """Forget every per-process memo of the fast path (benchmarks use it to measure a cold start)."""
    from tasks.dicom import dicom_json, fastheader

    _SERIES.clear()
    _VALUES.clear()
    dicom_json._BY_ELEMENT.clear()
    fastheader.reset_state()


def build_row_fast(fh: FastHeader, *, key: bytes, default_issuer: str | None = None) -> dict[str, Any]:
    """:func:`build_row` for the fast reader, with memos keyed by the elements' whole bytes.

    The series-level columns (all but :data:`_PER_INSTANCE`) are memoised together, keyed by the tuple
    of their elements' bytes; the per-instance ones column by column. Same values as :func:`build_row`
    (a miss calls the same decoders); the memos are per process and bounded. For a file that matched
    a series layout (``fh.layout``) whose varying elements are all per-instance columns, the row of the
    layout's first file is copied and only those columns are decoded again.
    """
    lay = fh.layout
    if lay is not None and fh.varied is not None:
        ck = ("row", key, default_issuer, fh.encoding)
        plan = lay.cache.get(ck, False)
        if plan is False:
            varied = {t for _, t in fh.varied}
            plan = lay.cache[ck] = None if varied & _SHARED_TAGS else (
                _build_row_memo(fh, key, default_issuer),
                [(col, tag, kind, _DIRECT.get((kind, fh.elements[tag][0]))) for col, tag, kind in _A if tag in varied])
        if plan is not None:
            row = dict(plan[0])
            elements = fh.elements
            for col, tag, kind, direct in plan[1]:
                row[col] = _value(fh, tag, kind) if direct is None else direct(elements[tag][1])
            return row
    return _build_row_memo(fh, key, default_issuer)


def _build_row_memo(fh: FastHeader, key: bytes, default_issuer: str | None) -> dict[str, Any]:
    wholes = dict(zip(fh.tags, fh.wholes, strict=True))
    skey = (fh.encoding, key, default_issuer, *map(wholes.get, _B_TAGS))
    part = _SERIES.get(skey)
    if part is None:
        if len(_SERIES) > 2_000:
            _SERIES.clear()
        part = _SERIES[skey] = _series_part(fh, key, default_issuer)
    row = dict(part)
    row[SERIES_PART] = part
    memos = _VALUES.get(fh.encoding)
    if memos is None or max(map(len, memos)) > 4_096:  # per-instance values rarely repeat: keep it small
        memos = _VALUES[fh.encoding] = [{} for _ in _A]
    for (col, tag, kind), memo in zip(_A, memos, strict=True):
        w = wholes.get(tag)
        if w is None:
            row[col] = None
            continue
        try:
            row[col] = memo[w]
        except KeyError:
            v = memo[w] = _value(fh, tag, kind)
            row[col] = v
    study = row["study_date"] or row["series_date"] or row["acquisition_date"]
    row["age_at_study_years"] = _age(row.pop("_birth"), study, row.pop("_age"))
    return row


class PydicomView:
    """:class:`HeaderView` over a pydicom dataset (the reference decoding)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def _raw(self, tag: int) -> Any:
        elem = self.ds.get(tag)
        if elem is None or elem.VR == "SQ":
            return None
        value = elem.value
        if value is None or value == "" or (isinstance(value, MultiValue | list) and len(value) == 0):
            return None
        if isinstance(value, bytes):
            raise ValueError(f"tag {tag:08X}: undecoded bytes (VR {elem.VR})")
        return list(value) if isinstance(value, MultiValue | list | tuple) else [value]

    def strings(self, tag: int) -> list[str] | None:
        vals = self._raw(tag)
        return None if vals is None else [str(v) for v in vals]

    def numbers(self, tag: int) -> list[float] | None:
        vals = self._raw(tag)
        return None if vals is None else [float(v) for v in vals]


def _required(row: dict[str, Any], has_preamble: bool) -> None:
    missing = [c for c in REQUIRED if not row.get(c)]
    if missing:
        if not has_preamble:
            raise HeaderError(QuarantineReason.NOT_DICOM, "no DICM preamble and no instance UIDs")
        raise HeaderError(QuarantineReason.MISSING_TAGS, f"missing {', '.join(missing)}")


def parse_header_pydicom(data: bytes, *, key: bytes, default_issuer: str | None = None) -> dict[str, Any]:
    """Reference parse with ``pydicom.dcmread(stop_before_pixels=True)``: promoted row + ``dicom_json``.

    Raises
    ------
    HeaderError
        With the quarantine reason when the file cannot be indexed.

    Notes
    -----
    pydicom stops silently at a truncated header; for little-endian syntaxes the structural check of
    the fast reader decides truncation. For big endian and deflate, only truncated pixel data is found.
    """
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    fp = io.BytesIO(data)
    level = _LOG.level
    _LOG.setLevel(logging.ERROR)  # pydicom logs every oddity of a damaged file; the verdict is recorded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                fp.seek(0)
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
            ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "") if hasattr(ds, "file_meta") else ""
            if ts and ts not in KNOWN_SYNTAXES:
                raise HeaderError(QuarantineReason.UNSUPPORTED_SYNTAX, f"transfer syntax {ts}")
            little = ts not in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
            if has_preamble and little:
                try:
                    read_fast(data)
                except Truncated as e:
                    raise HeaderError(QuarantineReason.TRUNCATED, str(e)) from e
                except Exception:  # noqa: BLE001 - the fast reader's other verdicts do not matter here
                    pos = fp.tell()
                    if pos < len(data) and int.from_bytes(data[pos : pos + 4], "little") >> 16 == 0x7FE0:
                        try:
                            check_pixel_data(data, pos, ts == "1.2.840.10008.1.2")
                        except Truncated as e:
                            raise HeaderError(QuarantineReason.TRUNCATED, str(e)) from e
            row = build_row(PydicomView(ds), key=key, default_issuer=default_issuer)
            _required(row, has_preamble)
            row["dicom_json"] = dicom_json.dumps(dicom_json.dataset_to_json(ds))
    except HeaderError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure inside pydicom is a property of the file
        reason = QuarantineReason.NOT_DICOM if not has_preamble else QuarantineReason.PARSE_ERROR
        if has_preamble:  # same structural verdict as the fast path: a length past the end is truncation
            try:
                read_fast(data)
            except Truncated:
                reason = QuarantineReason.TRUNCATED
            except Exception:  # noqa: BLE001
                pass
        raise HeaderError(reason, f"{type(e).__name__}: {e}") from e
    finally:
        _LOG.setLevel(level)
    row["transfer_syntax_uid"] = ts or None
    row["parser"] = "pydicom"
    return row


def parse_header(data: bytes, *, key: bytes, default_issuer: str | None = None, fast: bool = True) -> dict[str, Any]:
    """Parse one file's bytes: the fast reader when it can, pydicom otherwise (same row either way).

    Parameters
    ----------
    data
        The whole file.
    key
        Pseudonymisation key for ``person_key``.
    default_issuer
        IssuerOfPatientID to assume when the file has none.
    fast
        ``False`` forces the pydicom reference path.

    Raises
    ------
    HeaderError
        With the quarantine reason when the file cannot be indexed.
    """
    if fast:
        try:
            fh = read_fast(data)
        except Truncated as e:
            raise HeaderError(QuarantineReason.TRUNCATED, str(e)) from e
        except Exception:  # noqa: BLE001 - FastPathUnsupported or damage: pydicom decides
            fh = None
        if fh is not None:
            if fh.transfer_syntax not in KNOWN_SYNTAXES:
                raise HeaderError(QuarantineReason.UNSUPPORTED_SYNTAX, f"transfer syntax {fh.transfer_syntax}")
            try:
                row = build_row_fast(fh, key=key, default_issuer=default_issuer)
                js = dicom_json.header_json_text(fh)
            except (FastPathUnsupported, UnicodeDecodeError, ValueError, TypeError):
                row = None
            if row is not None:
                _required(row, True)
                row["dicom_json"] = js
                row["transfer_syntax_uid"] = fh.transfer_syntax
                row["parser"] = "fast"
                return row
    return parse_header_pydicom(data, key=key, default_issuer=default_issuer)
