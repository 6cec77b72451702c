from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.privacy import age_years, person_key

KEY = b"k" * 32


def test_person_key_is_stable_keyed_and_issuer_scoped() -> None:
    a = person_key(KEY, "MRN123", "HOSP")
    assert a == person_key(KEY, " MRN123 ", "HOSP")
    assert len(a) == 32 and all(c in "0123456789abcdef" for c in a)
    assert a != person_key(b"x" * 32, "MRN123", "HOSP")
    assert a != person_key(KEY, "MRN123", "OTHER")
    assert person_key(KEY, "MRN123", None) == person_key(KEY, "MRN123", "")
    assert "MRN123" not in a


@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_person_key_never_contains_the_identifier(pid: str) -> None:
    key = person_key(KEY, pid)
    assert len(key) == 32
    if len(pid.strip()) >= 4:
        assert pid.strip() not in key


def test_short_key_and_empty_id_are_errors() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        person_key(b"short", "MRN1")
    with pytest.raises(ValueError, match="empty"):
        person_key(KEY, "  ")


def test_age_years() -> None:
    assert age_years(date(1950, 6, 1), date(2020, 6, 1)) == 70.0
    assert age_years(None, date(2020, 1, 1)) is None
    assert age_years(date(2020, 1, 2), date(2020, 1, 1)) is None
