"""Deterministic Clarity LIMS dataset: what the simulator serves, and the truth a sync must reach.

Pure apart from its clock (injectable, so tests control "now"). Project ``i`` at version
``v`` is generated from ``random.Random(f"{seed}:{i}:{v}")``; a mutation bumps the
version of the projects it touches and stamps their ``last-modified`` with the clock.
Base projects were "last modified" long ago (2020 onwards), so an incremental sync
after a mutation sees only what the mutation touched.

Every shape of the real samples shows up, each forced on one index of every ten
(``_Q_*``) besides a random share: optional dates absent or present, a UDT (with its
fields qualified ``udf:field`` as in Illumina's example, or unqualified ``field`` as in
the XSD), all six UDF types, UDF text that does not parse as its type, empty UDFs,
external ids, files, priority, names that need escaping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = ["ClarityDataset", "DatasetConfig", "MutationSummary", "UDF_CATALOGUE", "UDT_NAME"]

BASE_MODIFIED = datetime(2020, 1, 1, tzinfo=timezone.utc)
_PREFIXES = ("ADM", "GOL", "BLA", "GAO", "SUL", "LAN", "PEA", "ZOH")
_KINDS = ("RN", "PM", "SC", "DN")
_PRIORITIES = ("Lowest", "Low", "Standard", "High", "Highest")
_MANAGERS = ("Robert Goldstone", "Ada Byron", "Rosalind Franklin", "Barbara McClintock")

# (name, type, unit) of the standalone UDFs: all six Clarity field types.
UDF_CATALOGUE: tuple[tuple[str, str, str | None], ...] = (
    ("Samples Quota", "Numeric", None),
    ("Turnaround time (days)", "Numeric", "days"),
    ("Development Project", "Boolean", None),
    ("Project Manager", "String", None),
    ("Sequencing Notes", "Text", None),
    ("Due Date", "Date", None),
    ("Data Link", "URI", None),
)
UDT_NAME = "Sequencing Plan"
UDT_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("Lanes", "Numeric", "lanes"),
    ("Paired End", "Boolean", None),
    ("Run Date", "Date", None),
)
_BAD_TEXT = {"Numeric": "n/a", "Boolean": "yes", "Date": "31/12/2020"}

_Q_ALL_UDFS = 0  # every standalone UDF present, external ids present
_Q_ODD_NAME = 1  # a name with &, < and non-ASCII
_Q_NO_OPEN_DATE = 2  # no open-date (so no close-date either)
_Q_CLOSED = 3  # close-date present
_Q_INVOICED = 4  # invoice-date present
_Q_NO_PRIORITY = 5  # no priority element
_Q_UDT = 6  # a UDT
_Q_BARE = 7  # no UDFs, no files, no external ids
_Q_BAD_UDFS = 8  # Numeric/Boolean/Date UDF text that does not parse as its type
_Q_EMPTY_UDF = 9  # an empty <udf:field/> and external ids


N_RESEARCHERS = 50  # projects name researchers 1..50
LABS = {1: "Genomics Core", 2: "Proteomics Lab", 3: "Bioinformatics Unit", 4: "Clinical Sequencing & Co"}
_FIRST = ("Ada", "Rosalind", "Barbara", "Frederick", "Linus", "Marie", "Gregor", "Dorothy", "Tu", "Émilie")
_LAST = ("Byron", "Franklin", "McClintock", "Sanger", "Pauling", "Curie", "Mendel", "Hodgkin", "Youyou", "du Châtelet")


def _researcher(rid: int) -> dict[str, Any]:
    """Researcher ``rid``: names, a lab (none for every fifth), and the personal details a
    real answer carries (e-mail, phone, credentials) that a sync must not keep."""
    first, last = _FIRST[rid % len(_FIRST)], _LAST[(rid // len(_FIRST) + rid) % len(_LAST)]
    return {"id": rid, "first_name": first, "last_name": last, "initials": first[0] + last[0],
            "lab": None if rid % 5 == 0 else 1 + rid % len(LABS),
            "email": f"{first.lower()}.{rid}@lab.example.org", "phone": f"+44 20 7946 {rid:04d}",
            "username": f"{first.lower()}{rid}"}


@dataclass(frozen=True)
class DatasetConfig:
    seed: int = 7
    n_projects: int = 100


@dataclass
class MutationSummary:
    updated: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"updated": self.updated, "added": self.added, "removed": self.removed}


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def limsid_of(index: int) -> str:
    return f"{_PREFIXES[index % len(_PREFIXES)]}{index + 1}"


class ClarityDataset:
    def __init__(self, config: DatasetConfig | None = None, clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config or DatasetConfig()
        self.clock = clock
        self._count = self.config.n_projects
        self._removed: set[int] = set()
        self._version: dict[int, int] = {}
        self._modified: dict[int, datetime] = {}
        self._by_limsid = {limsid_of(i): i for i in range(self._count)}
        self._cache: dict[tuple[int, int], dict[str, Any]] = {}
        # The instance's researchers and labs (tests edit them: rename, move, remove).
        self.researchers = {rid: _researcher(rid) for rid in range(1, N_RESEARCHERS + 1)}
        self.labs = dict(LABS)

    # ------------------------------------------------------------------ listing
    def live_indices(self) -> list[int]:
        return [i for i in range(self._count) if i not in self._removed]

    def project_ids(self) -> list[str]:
        return [limsid_of(i) for i in self.live_indices()]

    def index_of(self, limsid: str) -> int | None:
        index = self._by_limsid.get(limsid)
        return None if index is None or index in self._removed else index

    def modified_at(self, index: int) -> datetime:
        return self._modified.get(index, BASE_MODIFIED + timedelta(hours=index))

    def file_details(self, file_limsid: str) -> dict[str, Any] | None:
        """A project file's details as the server keeps them (None: no such file): where it
        is stored (the sftp URL names the server's upload user), its original name, and the
        path it came from on the uploader's computer (their user name in it)."""
        project_limsid = file_limsid.split("-40-", 1)[0]
        index = self.index_of(project_limsid)
        if index is None or file_limsid not in self.project(index)["files"]:
            return None
        n = int(file_limsid.rsplit("-", 1)[1])
        return {"limsid": file_limsid, "project": project_limsid, "published": n % 3 == 0,
                "content_location": f"sftp://glsftp@lims.example.org/opt/gls/clarity/users/glsftp/{project_limsid}/{file_limsid}.pdf",
                "original_name": f"Sample sheet {n}.pdf" if n % 4 else f"Ärger & <Co> {n}.pdf",
                "original_location": f"C:\\Users\\jdoe{n}\\Desktop\\Sample sheet {n}.pdf"}

    # ------------------------------------------------------------------ one project
    def project(self, index: int) -> dict[str, Any]:
        """The project's content: what the XML carries, plus ``bad`` marks for the truth."""
        key = (index, self._version.get(index, 0))
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            cached = self._cache[key] = self._generate(*key)
        return cached

    def _generate(self, index: int, version: int) -> dict[str, Any]:
        rng = random.Random(f"{self.config.seed}:{index}:{version}")
        q = index % 10
        limsid = limsid_of(index)
        name = f"{rng.choice(_KINDS)}{18 + index % 8}{index:04d}" + (f" v{version}" if version else "")
        if q == _Q_ODD_NAME:
            name = f"Caf\u00e9 & <Lab> {index} \u2013 \u00dcbersicht"
        opened = date(2016, 1, 1) + timedelta(days=rng.randrange(3000))
        open_date = None if q == _Q_NO_OPEN_DATE else opened
        close_date = None
        if open_date is not None and (q == _Q_CLOSED or rng.random() < 0.2):
            close_date = open_date + timedelta(days=rng.randrange(1, 400))
        invoice_date = opened + timedelta(days=rng.randrange(30, 500)) if q == _Q_INVOICED or rng.random() < 0.1 else None
        priority = None if q == _Q_NO_PRIORITY or rng.random() < 0.3 else rng.choice(_PRIORITIES)

        def value(udf_type: str, force_bad: bool) -> tuple[str | None, bool]:
            if force_bad and udf_type in _BAD_TEXT:
                return _BAD_TEXT[udf_type], True
            if udf_type == "Numeric":
                number = rng.randrange(1, 97) if rng.random() < 0.7 else round(rng.uniform(0.5, 300), 2)
                return str(number), False
            if udf_type == "Boolean":
                return rng.choice(("true", "false")), False
            if udf_type == "Date":
                return (opened + timedelta(days=rng.randrange(1, 200))).isoformat(), False
            if udf_type == "URI":
                return f"https://data.example.org/projects/{limsid}?v={version}&x=1", False
            if udf_type == "Text":
                return f"Notes for {limsid}:\nline two & <three>", False
            return rng.choice(_MANAGERS), False

        udfs = []
        if q != _Q_BARE:
            for udf_name, udf_type, unit in UDF_CATALOGUE:
                if q == _Q_ALL_UDFS or rng.random() < 0.6:
                    bad = q == _Q_BAD_UDFS or rng.random() < 0.03
                    text, is_bad = value(udf_type, bad)
                    if q == _Q_EMPTY_UDF and udf_name == "Project Manager":
                        text, is_bad = None, False
                    udfs.append({"name": udf_name, "type": udf_type, "unit": unit, "value": text, "bad": is_bad})
        udt = None
        if q == _Q_UDT or rng.random() < 0.2:
            fields = []
            for udf_name, udf_type, unit in UDT_FIELDS:
                text, is_bad = value(udf_type, False)
                fields.append({"name": udf_name, "type": udf_type, "unit": unit, "value": text, "bad": is_bad})
            # Illumina's example qualifies the UDT's fields (udf:field); the XSD does not.
            udt = {"name": UDT_NAME, "fields": fields, "qualified": index % 2 == 0}
        external_ids = []
        if q in (_Q_ALL_UDFS, _Q_EMPTY_UDF) or (q != _Q_BARE and rng.random() < 0.15):
            for k in range(1 + rng.randrange(2)):
                external_ids.append({"id": f"urn:crm:{limsid}:{k}", "uri": f"https://crm.example.org/cases/{limsid}-{k}"})
        n_files = 0 if q == _Q_BARE else rng.randrange(4)
        files = [f"{limsid}-40-{index * 10 + k + 1}" for k in range(n_files)]
        return {
            "limsid": limsid, "name": name, "open_date": open_date, "close_date": close_date,
            "invoice_date": invoice_date, "researcher": 1 + rng.randrange(50), "priority": priority,
            "udt": udt, "udfs": udfs, "external_ids": external_ids, "files": files,
        }

    # ------------------------------------------------------------------ change
    def mutate(self, seed: int, update_share: float = 0.0, add_share: float = 0.0,
               remove_share: float = 0.0) -> MutationSummary:
        """Update, add and remove a share of the live projects; touched projects get the
        clock's time as their last-modified."""
        rng = random.Random(f"mutate:{self.config.seed}:{seed}")
        live = self.live_indices()
        now = self.clock()
        summary = MutationSummary()
        n_remove = round(len(live) * remove_share)
        n_update = round(len(live) * update_share)
        removed = set(rng.sample(live, n_remove)) if n_remove else set()
        remaining = [i for i in live if i not in removed]
        updated = rng.sample(remaining, min(n_update, len(remaining))) if n_update else []
        for i in sorted(updated):
            self._version[i] = self._version.get(i, 0) + 1
            self._modified[i] = now
            summary.updated.append(limsid_of(i))
        for i in sorted(removed):
            self._removed.add(i)
            summary.removed.append(limsid_of(i))
        for _ in range(round(len(live) * add_share)):
            i = self._count
            self._count += 1
            self._by_limsid[limsid_of(i)] = i
            self._modified[i] = now
            summary.added.append(limsid_of(i))
        return summary

    # ------------------------------------------------------------------ truth
    def expected_rows(self) -> dict[str, int]:
        """Rows each table must hold after a complete sync of the live projects."""
        rows = {"projects": 0, "project_udfs": 0, "project_files": 0, "project_external_ids": 0,
                "rejected_records": 0}
        for i in self.live_indices():
            p = self.project(i)
            rows["projects"] += 1
            rows["project_udfs"] += len(p["udfs"]) + (len(p["udt"]["fields"]) if p["udt"] else 0)
            rows["project_files"] += len(p["files"])
            rows["project_external_ids"] += len(p["external_ids"])
        return rows

    def udf_parse_errors(self) -> int:
        return sum(1 for i in self.live_indices() for u in self._all_udfs(self.project(i)) if u["bad"])

    def numeric_udf_sum(self, name: str) -> float:
        """Sum of a Numeric UDF's values over the live projects (unparseable ones left out)."""
        return sum(
            float(u["value"]) for i in self.live_indices() for u in self._all_udfs(self.project(i))
            if u["name"] == name and u["type"] == "Numeric" and not u["bad"] and u["value"] is not None
        )

    @staticmethod
    def _all_udfs(p: dict[str, Any]) -> list[dict[str, Any]]:
        return list(p["udfs"]) + (list(p["udt"]["fields"]) if p["udt"] else [])
