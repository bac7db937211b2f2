"""Columns that directly identify a person, and keeping them out of a model's inputs.

:func:`find_identifiers` flags columns that directly identify a person (names, e-mail
addresses, phone numbers, national ids, bank accounts) from their names and from their
values; :func:`exclude_identifiers` keeps them out of a model's inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ml_core.spec import ColumnMapping, normalise_name
from ml_core.tables import distinct_means, first_present, name_words

# Normalised column names (see normalise_name) that name a direct identifier, by kind.
IDENTIFIER_NAMES = {
    "person name": {
        "name", "fullname", "firstname", "lastname", "surname", "forename", "forenames",
        "givenname", "familyname", "middlename", "maidenname", "customername", "clientname",
        "patientname", "applicantname", "studentname", "employeename", "personname",
        "contactname", "cardholder", "cardholdername", "accountholder", "accountholdername",
    },
    "e-mail address": {"email", "emailaddress", "mail", "mailaddress", "emailid"},
    "phone number": {
        "phone", "phonenumber", "phoneno", "telephone", "telephonenumber", "tel", "telno",
        "mobile", "mobilenumber", "mobilephone", "cellphone", "cell", "fax", "faxnumber",
    },
    "national id": {
        "ssn", "socialsecuritynumber", "socialsecurityno", "nhs", "nhsnumber", "nhsno",
        "nino", "nationalinsurancenumber", "nationalinsuranceno", "nationalid",
        "nationalidnumber", "taxid", "taxnumber", "passport", "passportnumber", "passportno",
        "driverslicense", "driverslicence", "drivinglicence", "driverlicense",
        "medicarenumber", "personnummer", "bsn", "insee",
    },
    "bank account or card": {
        "iban", "accountnumber", "bankaccount", "bankaccountnumber", "creditcard",
        "creditcardnumber", "cardnumber", "sortcode",
    },
    "street or network address": {
        "address", "streetaddress", "homeaddress", "postaladdress", "addressline1",
        "addressline2", "street", "ipaddress",
    },
    "user name": {"username", "login", "userlogin", "screenname"},
}
# Words that flag a longer name ("applicant e-mail", "home_phone", "patient_ssn").
IDENTIFIER_WORDS = {
    "email": "e-mail address", "phone": "phone number", "telephone": "phone number",
    "mobile": "phone number", "ssn": "national id", "nhs": "national id",
    "passport": "national id", "iban": "bank account or card", "surname": "person name",
    "firstname": "person name", "lastname": "person name", "fullname": "person name",
    "forename": "person name",
}
# "... name" is a person's name when the other words say whose.
PERSON_WORDS = {"first", "last", "full", "given", "family", "middle", "maiden", "customer",
                "client", "patient", "applicant", "student", "person", "contact", "employee",
                "holder", "user"}
# A column is flagged by its values when at least this share of a sample matches one pattern.
IDENTIFIER_SHARE = 0.8
IDENTIFIER_SAMPLE = 500
_MIN_VALUES = 3
# A column named like an identifier with at most this many distinct values holds codes.
MAX_CODES = 20

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_SSN = re.compile(r"\d{3}-\d{2}-\d{4}")
_NHS = re.compile(r"\d{3}[ -]?\d{3}[ -]?\d{4}")
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]")
_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
_CARD = re.compile(r"\d{4}([ -]?\d{4}){2}[ -]?\d{1,7}")
_PHONE = re.compile(r"\+?\(?\d[\d ().-]{6,22}\d")


@dataclass(frozen=True)
class IdentifierFinding:
    """A column that looks like a direct identifier, and why."""

    column: str
    kind: str  # "e-mail address", "phone number", "national id", ...
    evidence: str  # "name" or "values"
    message: str

    def to_dict(self) -> dict:
        return {"column": self.column, "kind": self.kind, "evidence": self.evidence,
                "message": self.message}


def _nhs_valid(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if len(digits) != 10:
        return False
    check = 11 - sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return (0 if check == 11 else check) == digits[9] and check != 10


def _iban_valid(value: str) -> bool:
    compact = value.replace(" ", "")
    if not _IBAN.fullmatch(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _luhn_valid(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _phone_like(value: str) -> bool:
    if not _PHONE.fullmatch(value):
        return False
    digits = sum(c.isdigit() for c in value)
    separators = sum(c in " ().-" for c in value)
    # Plain long numbers are amounts or codes: a phone number is written with a leading +,
    # ( or 0, or grouped with ten digits or more (555-123-4567).
    if value[0] in "+(0":
        return 8 <= digits <= 15
    return 10 <= digits <= 15 and separators >= 2


# (kind, test of one stripped text value), most specific first.
_VALUE_TESTS = (
    ("e-mail address", lambda v: bool(_EMAIL.fullmatch(v))),
    ("national id", lambda v: bool(_SSN.fullmatch(v))),
    ("national id", lambda v: bool(_NINO.fullmatch(v.upper()))),
    ("national id", lambda v: bool(_NHS.fullmatch(v)) and _nhs_valid(v)),
    ("bank account or card", _iban_valid),
    ("bank account or card", lambda v: bool(_CARD.fullmatch(v)) and _luhn_valid(v)),
    ("phone number", _phone_like),
)
_VALUE_LABELS = {
    "e-mail address": "e-mail addresses", "national id": "national id numbers",
    "bank account or card": "bank account or card numbers", "phone number": "phone numbers",
}


def _kind_by_name(column: str) -> str | None:
    norm = normalise_name(column)
    for kind, names in IDENTIFIER_NAMES.items():
        if norm in names:
            return kind
    words = name_words(column)
    for word in words:
        if word in IDENTIFIER_WORDS:
            return IDENTIFIER_WORDS[word]
    if "name" in words and words & PERSON_WORDS:
        return "person name"
    return None


def _kind_by_values(values: pd.Series) -> tuple[str, float] | None:
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
        # Numbers read as numbers: only NHS numbers (ten digits with a check digit) are
        # specific enough to tell from amounts and codes. Missing ones are not finite.
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(numbers)
        count = int(finite.sum())
        # Ten digits first (rare in other columns), then wholeness of those only.
        ten_digits = np.flatnonzero(finite & (numbers >= 1e9) & (numbers < 1e10))
        if count < _MIN_VALUES or len(ten_digits) < IDENTIFIER_SHARE * count:
            return None
        whole = values.iloc[ten_digits[numbers[ten_digits] % 1 == 0]]
        if len(whole) < IDENTIFIER_SHARE * count:
            return None
        text = whole.head(IDENTIFIER_SAMPLE).map(lambda v: str(int(v)))
        share = float(text.map(_nhs_valid).sum()) / min(count, IDENTIFIER_SAMPLE)
        return ("national id", share) if share >= IDENTIFIER_SHARE else None
    sample = first_present(values, IDENTIFIER_SAMPLE).astype(str).str.strip()
    sample = sample[sample != ""]
    if len(sample) < _MIN_VALUES:
        return None
    shares = distinct_means(sample, (test for _, test in _VALUE_TESTS))
    for (kind, _), share in zip(_VALUE_TESTS, shares, strict=True):
        if share >= IDENTIFIER_SHARE:
            return kind, share
    return None


def _identifying(values: pd.Series) -> bool:
    """Whether a column named like an identifier holds values that could identify: many
    distinct ones. A handful of codes ('address' as U/R, urban or rural) identifies no one."""
    present = values.dropna()
    distinct = present.nunique()
    return distinct > MAX_CODES or (distinct >= _MIN_VALUES
                                    and distinct >= IDENTIFIER_SHARE * len(present))


def find_identifiers(frame: pd.DataFrame) -> list[IdentifierFinding]:
    """Columns that look like direct identifiers of a person, by name or by values.

    By name: names, e-mail, phone, national ids (SSN, NHS, national insurance, passport),
    bank accounts and cards, street or IP addresses, user names, when the column has more
    than a few codes' worth of distinct values. By values: at least 80%
    of a sample of the column are e-mail addresses, US social security numbers, UK
    national insurance numbers, NHS numbers (with a valid check digit), IBANs (valid
    mod-97), card numbers (valid Luhn) or phone numbers. Quasi-identifiers (age, postcode)
    are not flagged: they are what fairness audits and models legitimately use.
    """
    findings = []
    for column in frame.columns:
        column = str(column)
        kind = _kind_by_name(column)
        if kind is not None and _identifying(frame[column]):
            findings.append(IdentifierFinding(
                column=column, kind=kind, evidence="name",
                message=f"Column '{column}' looks like a direct identifier: its name says "
                        f"{kind}.",
            ))
            continue
        found = _kind_by_values(frame[column])
        if found is not None:
            kind, share = found
            findings.append(IdentifierFinding(
                column=column, kind=kind, evidence="values",
                message=f"Column '{column}' looks like a direct identifier: "
                        f"{math.floor(share * 100)}% of its values are "
                        f"{_VALUE_LABELS[kind]}.",
            ))
    return findings


# Roles through which a column reaches a model as an input.
INPUT_ROLES = ("covariate", "text")


def exclude_identifiers(
    mapping: ColumnMapping, identifiers: list[str] | tuple[str, ...]
) -> tuple[ColumnMapping, list[str]]:
    """``mapping`` with ``identifiers`` kept out of the model's inputs: removed from
    ``features`` and input roles (covariate, text) and added to ``exclude``.

    The target, the row id, sensitive attributes (audited, never inputs) and structural
    roles (series, user, unit keys) keep them. Also returns the columns kept out.
    """
    keep = {mapping.target, mapping.id, *mapping.sensitive,
            *(column for role, column in mapping.roles if role not in INPUT_ROLES)}
    blocked = [column for column in dict.fromkeys(identifiers) if column not in keep]
    if not blocked:
        return mapping, []
    return replace(
        mapping,
        features=tuple(c for c in mapping.features if c not in blocked),
        exclude=tuple(dict.fromkeys([*mapping.exclude, *blocked])),
        roles=tuple((role, column) for role, column in mapping.roles
                    if not (role in INPUT_ROLES and column in blocked)),
    ), blocked
