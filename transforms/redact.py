"""Raw JSON we keep (unmodelled fields, rejected records, unknown record kinds) passes
through here first, so it carries no patient name, birth date, patient id or signed link."""

from __future__ import annotations

from typing import Any

from transforms.pseudonym import Pseudonymizer, birth_year

# Signed download links are credentials: dropped wherever they appear.
DROPPED_KEYS = frozenset({"downloadLink", "downloadlink", "download_link"})
PSEUDONYMISED_KEYS = frozenset({"patientId", "patient_id", "patientName"})
MAX_DEPTH = 64


def redact(value: Any, pseudonyms: Pseudonymizer, _depth: int = 0) -> Any:
    if _depth > MAX_DEPTH:
        return "<nesting too deep: truncated>"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in DROPPED_KEYS:
                continue
            if key in PSEUDONYMISED_KEYS:
                out[key] = pseudonyms.pseudonym(item) if isinstance(item, (str, int)) else None
            elif key == "subject":
                out[key] = _redact_subject(item, pseudonyms, _depth + 1)
            elif isinstance(item, (dict, list)):
                out[key] = redact(item, pseudonyms, _depth + 1)
            else:
                out[key] = item  # a plain value: no call per leaf (most of a record)
        return out
    if isinstance(value, list):
        return [redact(item, pseudonyms, _depth + 1) for item in value]
    return value


def _redact_subject(subject: Any, pseudonyms: Pseudonymizer, depth: int) -> Any:
    """A subject is documented as ``{name, birth}``. In any other shape it is still the
    patient: text is taken for a name, and every object or array inside it is read as a
    subject too (a `name` nested in it is the patient's as well)."""
    if depth > MAX_DEPTH:
        return "<nesting too deep: truncated>"
    if isinstance(subject, str):
        return pseudonyms.pseudonym(subject)
    if isinstance(subject, list):
        return [_redact_subject(item, pseudonyms, depth + 1) for item in subject]
    if not isinstance(subject, dict):
        return subject
    out: dict[str, Any] = {}
    for key, item in subject.items():
        if key == "name":
            out["name_pseudonym"] = pseudonyms.pseudonym(item) if isinstance(item, (str, int)) else None
        elif key == "birth":
            try:
                out["birth_year"] = birth_year(item)
            except ValueError:
                out["birth_year"] = None
        elif isinstance(item, (dict, list)) and key not in DROPPED_KEYS and key not in PSEUDONYMISED_KEYS:
            out[key] = _redact_subject(item, pseudonyms, depth + 1)
        else:
            # The same rules as anywhere else (patientId, links, plain values).
            out.update(redact({key: item}, pseudonyms, depth))
    return out
