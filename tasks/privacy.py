"""Pseudonymisation: one keyed function turns every patient identifier into ``person_key``.

DICOM PatientID (with its IssuerOfPatientID) and OMOP ``person_source_value`` go through the same
function, so images and the clinical record join without either raw identifier entering the warehouse.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

MIN_KEY_BYTES = 16


def check_key(key: bytes) -> bytes:
    """Return ``key`` if it is long enough to be a secret; raise ``ValueError`` otherwise."""
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"pseudonym key must be bytes, got {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"pseudonym key is {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return bytes(key)


def person_key(key: bytes, patient_id: str, issuer: str | None = None) -> str:
    """Keyed HMAC-SHA256 of (issuer, patient_id) as 32 hex characters.

    Parameters
    ----------
    key
        The site's secret (``OSTEOLAKE_PSEUDONYM_KEY`` or a key file); at least 16 bytes.
    patient_id
        DICOM PatientID or OMOP person_source_value (the MRN). Surrounding blanks are ignored.
    issuer
        IssuerOfPatientID; ``None`` and ``""`` are the same issuer.

    Notes
    -----
    The pseudonym is stable for a key; a different key gives unrelated pseudonyms. It does not protect
    against an attacker who holds the key and can enumerate MRNs.
    """
    pid = (patient_id or "").strip()
    if not pid:
        raise ValueError("patient_id is empty; cannot pseudonymise")
    msg = f"{(issuer or '').strip()}\x1f{pid}".encode()
    return hmac.new(check_key(key), msg, hashlib.sha256).hexdigest()[:32]


def age_years(birth: date | None, at: date | None) -> float | None:
    """Age in years (one decimal) at ``at``; ``None`` when either date is unknown or order is impossible."""
    if birth is None or at is None or at < birth:
        return None
    return round((at - birth).days / 365.25, 1)
