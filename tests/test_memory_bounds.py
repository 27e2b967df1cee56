"""What a run keeps for the whole account stays small: list entries as JSON text, the
parsed list given up entry by entry, each unit released with its batch, and a bounded
pseudonym cache (memory at 20,000 and 200,000 projects: docs/performance.md)."""

from __future__ import annotations

from dataclasses import replace

from pwh.flows.engine import Unit, _taken_in_batches, listed_units
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


def test_listing_gives_up_each_parsed_entry_before_it_reads_the_next():
    entries = [{"id": f"p{n}", "v": n} for n in range(5)] + [{"v": "no id"}, {"id": "p5", "v": 5}]
    left_when_read = []

    def cursor(entry):
        left_when_read.append(len(entries))  # the entry being read is no longer in the list
        return str(entry["v"])

    units = listed_units(entries, "id", cursor, "test")
    assert [u.key for u in units] == [f"p{n}" for n in range(6)]  # the list's order, the keyless entry skipped
    assert [u.entry for u in units][:2] == [{"id": "p0", "v": 0}, {"id": "p1", "v": 1}]
    assert entries == [] and left_when_read == [6, 5, 4, 3, 2, 0]
    # Any other iterable is read as it is (a generator: nothing to give up).
    assert [u.key for u in listed_units(({"id": k} for k in "ab"), "id", lambda e: None, "test")] == ["a", "b"]


def test_batches_are_taken_out_of_the_plan_in_order():
    units = [Unit(f"p{n}", None) for n in range(7)]
    batches = _taken_in_batches(units, 3)
    first = next(batches)
    assert [u.key for u in first] == ["p0", "p1", "p2"]
    assert {u.key for u in units} == {"p3", "p4", "p5", "p6"}  # handed-out units are no longer held
    assert [[u.key for u in b] for b in batches] == [["p3", "p4", "p5"], ["p6"]]
    assert units == []
