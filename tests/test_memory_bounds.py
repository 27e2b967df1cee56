"""What a run keeps for the whole account stays small: list entries as JSON text, and a
bounded pseudonym cache (memory at 20,000 projects: docs/performance.md)."""

from __future__ import annotations

from dataclasses import replace

from pwh.flows.engine import Unit
from pwh.transforms.pseudonym import CACHE_SIZE, Pseudonymizer


def test_a_unit_keeps_its_list_entry_as_json_and_gives_it_back():
    entry = {"_id": "p1", "updated": 1700000000000, "subject": {"name": "Jane Roe"}, "big": 2**64 - 1}
    unit = Unit("p1", "1700000000000", entry)
    assert isinstance(unit.listed, bytes)
    assert unit.entry == entry
    assert unit.entry is not unit.entry  # parsed anew: a caller cannot alter what is kept
    assert replace(unit, stored=True).entry == entry  # planning keeps it
    assert Unit("p2", None).entry is None


def test_the_pseudonym_cache_is_bounded_and_pseudonyms_stay_stable():
    pseudonyms = Pseudonymizer(b"memory-bounds-key-0123456789")
    first = pseudonyms.pseudonym("patient-0")
    for n in range(3 * CACHE_SIZE):
        pseudonyms.pseudonym(f"patient-{n}")
    assert len(pseudonyms._cache) <= CACHE_SIZE
    assert pseudonyms.pseudonym("patient-0") == first
