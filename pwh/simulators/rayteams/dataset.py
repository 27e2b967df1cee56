"""Deterministic, lazy RAYTeams dataset: what the simulator serves, and the truth a sync must reach.

Pure: no I/O, no clock. Every project is derived on demand from ``(seed, index, version)``:

* the project information and its files come from one random stream (``"{seed}:{index}:p"``),
  the sub-resources (memos, attachments, histories, orders, groups, undocumented records)
  from another (``"{seed}:{index}:s"``), so listing 20,000 projects never builds their
  sub-resources;
* every change to a project (a ``mutate`` round touching it, or an uploaded attachment) is
  an *event* appended to that project's event log; ``version`` is the log's length, and the
  project at version ``v`` is its base state with events ``1..v`` replayed, each event drawing
  from its own stream (``"{seed}:{index}:{v}:..."``). Same seed and same calls → same bytes.

Only small bounded LRU caches are kept (per ``(index, version)``); nothing scales with the
number of projects until a caller asks for every project (``project_list``, ``expected_rows``).

Every quirk of the documented API appears in a share of records, and each is forced on at
least one project of every ten consecutive indices (``index % 10``), so any fresh dataset of
10+ projects shows all of them: see ``_Q_*`` below.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

__all__ = [
    "DatasetConfig",
    "MutationSummary",
    "RayteamsDataset",
    "SUB_KINDS",
    "FILE_TYPES",
    "TABLES",
    "DOCUMENTED_SK_PREFIXES",
    "UNDOCUMENTED_SK_PREFIXES",
]

SUB_KINDS = ("memo", "attachments", "histories", "orders", "groups")
FILE_TYPES = ("maxilla", "mandible", "face")
TABLES = (
    "projects",
    "memos",
    "memo_comments",
    "attachments",
    "histories",
    "orders",
    "groups",
    "files",
    "other_records",
    "rejected_records",
)
# sk prefixes the documentation lists (record kinds); everything else is "undocumented".
DOCUMENTED_SK_PREFIXES = ("project", "memo:", "attachments:", "his:", "order:", "project:institute:")
UNDOCUMENTED_SK_PREFIXES = ("scan", "cbct", "design")

T0_MS = 1_640_995_200_000  # 2022-01-01T00:00:00Z: project index 0 is created shortly after
PROJECT_SPACING_MS = 30 * 60 * 1000  # project i is created in [T0 + i*spacing, T0 + (i+1)*spacing)
DOWNLOAD_TTL_MS = 30 * 60 * 1000  # "a link is valid for 30 minutes"
REGION = "ap-northeast-2"
LINK_HOST = "https://files.sim.rayteams.invalid"

# Which project (index % 10) is forced to show which quirk (besides a random share elsewhere).
_Q_ORDERS = (0, 5)  # at least one order
_Q_NAME_NUMBER = 1  # project "name" is a number (the table says Number)
_Q_COUNT_BOOL = 2  # "count" is a boolean (the table says Boolean)
_Q_ISTRASH_STR = 3  # "istrash" is the string "true"/"false" (the table says String)
_Q_PROJECT_TS_STR = 4  # project created/updated as numeric strings
_Q_NO_STATUS = 5  # no "status" object
_Q_NO_FILES = 6  # GET /file/{id} answers {}
_Q_MEMO_TS_STR = 7  # first memo's and its first comment's "created" as numeric strings
_Q_CONTENTS = 8  # first comment's text under "contents" (the table) instead of "content"
_Q_EXPIRED_STR = 9  # first file's "downloadExpired" as a numeric string

_SURNAMES = ("Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han", "Oh")
_STATUS_TEXTS = ("Request Confirm", "Scan Done", "Design", "In Production", "Shipped", "Completed")
_PROJECT_TYPES = ("DENTALAVATAR", "DENTALAVATAR", "IOS")
_TYPE_FILES = {"DENTALAVATAR": FILE_TYPES, "IOS": ("maxilla", "mandible")}
_PHRASES = (
    "Please check the margin line",
    "Shade A2, see photo",
    "Scan re-uploaded",
    "Bite registration attached",
    "Patient prefers a lighter shade",
    "Need the design by Friday",
    "Contact point too tight on 36",
    "Approved, go to production",
    "모델 확인 부탁드립니다",
    "Occlusion looks fine",
)
_MIMES = (
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("application/pdf", "pdf"),
    ("model/stl", "stl"),
    ("application/zip", "zip"),
)
_PRODUCTS = (
    ("원", "투명 교정 기본 B형", 360000),
    ("원", "Zirconia Crown", 120000),
    ("원", "Surgical Guide", 250000),
    ("USD", "Clear Aligner Full", 1500),
    ("KRW", "Temporary Bridge", 80000),
)
_WORKFLOW_STEPS = (
    ("Order Received", "NEW"),
    ("Wait Response", "INPROGRESS"),
    ("Confirmed", "INPROGRESS"),
    ("In Production", "INPROGRESS"),
    ("Delivered", "CLOSED"),
    ("Cancelled", "CLOSED"),
)
_TREATMENT_TYPES = ("crown", "bridge", "inlay", "veneer", "implant", "aligner")
_MATERIALS = ("zirconia", "e.max", "PMMA", "gold", "titanium")
_HISTORY_OTHER = (
    "RAY_LINK_PROJECT_UPDATE",
    "RAY_LINK_PROJECT_ADDATTACHMENT",
    "RAY_LINK_PROJECT_SHARE",
    "RAY_LINK_ORDER_STATUS",
)


@dataclass(frozen=True)
class DatasetConfig:
    seed: int = 7
    n_projects: int = 100
    invalid_records: int = 0  # number of records that cannot load (attachments/histories/orders)
    undocumented_kind_share: float = 0.1  # share of projects holding one record of an undocumented sk kind
    region: str = REGION  # the RAYTeams region this account lives in (each project's "region")


@dataclass
class MutationSummary:
    updated: list[str]
    added: list[str]
    removed: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)


def _weighted(r: random.Random, weights: tuple[float, ...]) -> int:
    """An integer n with probability weights[n]."""
    x = r.random()
    for n, w in enumerate(weights):
        x -= w
        if x < 0:
            return n
    return len(weights) - 1


_COUNT_FIELDS = tuple(t for t in TABLES if t != "projects")

_MEMO_WEIGHTS = (0.08, 0.2, 0.22, 0.2, 0.15, 0.1, 0.05)  # mean ~2.7
_COMMENT_WEIGHTS = (0.3, 0.25, 0.2, 0.15, 0.1)  # mean 1.5 per memo -> ~4 per project
_ATTACHMENT_WEIGHTS = (0.06, 0.12, 0.2, 0.22, 0.18, 0.12, 0.1)  # mean ~3.1
_ORDER_WEIGHTS = (0.22, 0.25, 0.22, 0.15, 0.1, 0.06)  # mean ~1.9


def _ri(r: random.Random, a: int, b: int) -> int:
    """Like r.randint(a, b), several times faster (generation is dominated by these calls)."""
    return a + int(r.random() * (b - a + 1))


def _pick(r: random.Random, seq: Any) -> Any:
    """Like r.choice(seq), faster."""
    return seq[int(r.random() * len(seq))]


def _uniq(ts: int, used: set[int]) -> int:
    """``ts`` or the next free millisecond after it; marks it used."""
    while ts in used:
        ts += 1
    used.add(ts)
    return ts


def _fresh(r: random.Random, lo: int, hi: int, used: set[int]) -> int:
    """A time stamp in [lo, hi] not in ``used`` (marks it used)."""
    return _uniq(_ri(r, lo, max(lo, hi)), used)


def _ts(value: int, as_string: bool) -> int | str:
    return str(value) if as_string else value


def _html(text: str) -> str:
    return f"<p>{text}</p>\n"


def _clone(obj: Any) -> Any:
    """Deep copy of JSON-like data (much faster than copy.deepcopy)."""
    if type(obj) is dict:
        return {k: _clone(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_clone(v) for v in obj]
    return obj


def _sk_ts(sk: str) -> int:
    return int(sk.rsplit(":", 1)[1])


class _Core:
    """Project information and files of one project at one version (internal, raw values)."""

    __slots__ = (
        "index",
        "pid",
        "region",
        "name_num",
        "name_is_number",
        "patient_id",
        "projecttype",
        "owner",
        "lab",
        "last_update",
        "status_text",
        "subject_name",
        "birth",
        "istrash",
        "isarchive",
        "created",
        "updated",
        "q_count_bool",
        "q_istrash_str",
        "q_created_str",
        "q_updated_str",
        "files",
    )

    index: int
    pid: str
    region: str
    name_num: int
    name_is_number: bool
    patient_id: str
    projecttype: str
    owner: str
    lab: str
    last_update: str
    status_text: str | None
    subject_name: str
    birth: str
    istrash: bool
    isarchive: bool
    created: int
    updated: list[int]  # one time stamp per version; the last is the current one
    q_count_bool: bool
    q_istrash_str: bool
    q_created_str: bool
    q_updated_str: bool
    files: list[dict[str, Any]]

    def info(self) -> dict[str, Any]:
        files = self.files
        count = len(files)
        d: dict[str, Any] = {
            "_id": self.pid,
            "sk": "project",
            "region": self.region,
            "name": self.name_num if self.name_is_number else f"project-{self.name_num}",
            "patientId": self.patient_id,
            "projecttype": self.projecttype,
            "count": (count > 0) if self.q_count_bool else count,
            "size": sum(f["size"] for f in files),
            "ownerGroupId": self.owner,
            "labId": self.lab,
            "lastUpdateGroupId": self.last_update,
        }
        if self.status_text is not None:
            d["status"] = {"code": "custom", "text": self.status_text}
        d["subject"] = {"name": self.subject_name, "birth": self.birth}
        d["istrash"] = ("true" if self.istrash else "false") if self.q_istrash_str else self.istrash
        d["isarchive"] = self.isarchive
        d["created"] = _ts(self.created, self.q_created_str)
        d["updated"] = _ts(self.updated[-1], self.q_updated_str)
        return d

    def file_records(self) -> list[dict[str, Any]]:
        expires = self.updated[-1] + DOWNLOAD_TTL_MS
        return [
            {
                "filetype": f["filetype"],
                "name": f["name"],
                "size": f["size"],
                "downloadLink": f["link"],
                "downloadExpired": _ts(expires, f["exp_str"]),
            }
            for f in self.files
        ]


class _Subs:
    """Sub-resources of one project at one version (internal; records already in API shape)."""

    __slots__ = ("kinds", "other", "invalid", "protected")

    def __init__(self) -> None:
        self.kinds: dict[str, list[dict[str, Any]]] = {k: [] for k in SUB_KINDS}
        self.other: list[dict[str, Any]] = []  # undocumented-kind records (aggregate only)
        self.invalid: list[tuple[str, str]] = []  # (table, sk)
        self.protected: set[str] = set()  # sks a mutation must not remove (forced quirks, invalid)


class RayteamsDataset:
    """A deterministic RAYTeams account; see the module docstring.

    Returned structures are fresh copies: callers may modify them freely.
    ``state`` changes whenever anything served changes (for caches of the list);
    ``version(project_id)`` changes whenever that project changes.
    """

    def __init__(self, config: DatasetConfig):
        self.config = config
        self._seed = config.seed
        self._order: list[int] = list(range(config.n_projects))  # current indices, stable order
        self._present: set[int] | None = None  # lazily built from _order
        self._next_index = config.n_projects
        self._events: dict[int, tuple[tuple[Any, ...], ...]] = {}
        self._pids: dict[int, str] = {}
        self._by_pid: dict[str, int] | None = None
        self.state = 0
        r = random.Random(f"{self._seed}:pools")
        self._institutes = [f"{r.getrandbits(96):024x}" for _ in range(24)]
        self._labs = [f"{r.getrandbits(96):024x}" for _ in range(6)]
        self._invalid_plan = self._plan_invalid()
        self._core = lru_cache(maxsize=8192)(self._build_core)
        self._subs = lru_cache(maxsize=512)(self._build_subs)
        self._counts: dict[int, tuple[int, tuple[int, ...]]] = {}  # index -> (version, row counts)

    # ------------------------------------------------------------------ identity
    def _pid(self, index: int) -> str:
        pid = self._pids.get(index)
        if pid is None:
            r = random.Random(f"{self._seed}:{index}:id")
            pid = str(uuid.UUID(int=r.getrandbits(128), version=4))
            self._pids[index] = pid
        return pid

    def _index(self, project_id: str) -> int | None:
        if self._by_pid is None:
            self._by_pid = {self._pid(i): i for i in self._order}
        return self._by_pid.get(project_id)

    def version(self, project_id: str) -> int | None:
        """How many changes the project has seen (None if no such project)."""
        i = self._index(project_id)
        return None if i is None else len(self._events.get(i, ()))

    def _ver(self, index: int) -> int:
        return len(self._events.get(index, ()))

    def _plan_invalid(self) -> dict[int, list[str]]:
        """index -> tables of its records made invalid; spread over distinct projects first."""
        n, n_proj = self.config.invalid_records, self.config.n_projects
        plan: dict[int, list[str]] = {}
        if n <= 0 or n_proj <= 0:
            return plan
        r = random.Random(f"{self._seed}:invalid")
        tables = ("attachments", "histories", "orders")
        order = r.sample(range(n_proj), n_proj)
        for k in range(n):
            plan.setdefault(order[k % n_proj], []).append(tables[k % 3])
        return plan

    # ------------------------------------------------------------------ generation
    def _build_core(self, index: int, version: int) -> _Core:
        seed = self._seed
        r = random.Random(f"{seed}:{index}:p")
        res = index % 10
        c = _Core()
        c.index = index
        c.pid = pid = self._pid(index)
        c.region = self.config.region
        c.name_num = _ri(r, 1_000_000, 9_999_999)
        c.name_is_number = res == _Q_NAME_NUMBER or r.random() < 0.05
        c.patient_id = f"patient-{_ri(r, 100000, 999999)}" if r.random() < 0.8 else f"NEW-{_ri(r, 1, 9999):04d}"
        c.projecttype = _pick(r, _PROJECT_TYPES)
        c.owner = _pick(r, self._institutes)
        c.lab = _pick(r, self._labs)
        c.last_update = c.owner if r.random() < 0.6 else c.lab
        no_status = res == _Q_NO_STATUS or r.random() < 0.1
        c.status_text = None if no_status else _pick(r, _STATUS_TEXTS)
        c.subject_name = f"Patient {_pick(r, _SURNAMES)} {r.getrandbits(24):06x}"
        c.birth = f"{_ri(r, 1940, 2015)}-{_ri(r, 1, 12):02d}-{_ri(r, 1, 28):02d}"
        c.istrash = r.random() < 0.1
        c.isarchive = r.random() < 0.1
        c.q_count_bool = res == _Q_COUNT_BOOL or r.random() < 0.05
        c.q_istrash_str = res == _Q_ISTRASH_STR or r.random() < 0.05
        ts_str = res == _Q_PROJECT_TS_STR
        c.q_created_str = ts_str or r.random() < 0.04
        c.q_updated_str = ts_str or r.random() < 0.04
        c.created = created = T0_MS + index * PROJECT_SPACING_MS + int(r.random() * PROJECT_SPACING_MS)
        c.updated = [created + _ri(r, 3_600_000, 60 * 86_400_000)]
        files: list[dict[str, Any]] = []
        if not (res == _Q_NO_FILES or r.random() < 0.1):
            for ft in _TYPE_FILES[c.projecttype]:
                if r.random() < 0.85:
                    files.append(self._new_file(r, pid, ft, f"{ft}.obj"))
                if r.random() < 0.3:
                    files.append(self._new_file(r, pid, ft, f"{ft}_prep.stl"))
            if not files and res == _Q_EXPIRED_STR:
                files.append(self._new_file(r, pid, "maxilla", "maxilla.obj"))
        if files and res == _Q_EXPIRED_STR:
            files[0]["exp_str"] = True
        c.files = files
        for v, event in enumerate(self._events.get(index, ())[:version], start=1):
            self._core_event(c, v, event)
        return c

    def _new_file(self, r: random.Random, pid: str, filetype: str, name: str) -> dict[str, Any]:
        sig = hashlib.sha256(f"{self._seed}:{pid}:file:{name}".encode()).hexdigest()
        link = f"{LINK_HOST}/{pid}/{quote(name)}?X-Amz-Expires=1800&X-Amz-Signature={sig}"
        return {
            "filetype": filetype,
            "name": name,
            "size": _ri(r, 1_000_000, 50_000_000),
            "link": link,
            "exp_str": r.random() < 0.08,
        }

    def _core_event(self, c: _Core, v: int, event: tuple[Any, ...]) -> None:
        r = random.Random(f"{self._seed}:{c.index}:{v}:p:{event[1]}")
        prev = c.updated[-1]
        if event[0] == "upload":
            c.updated.append(prev + _ri(r, 1_000, 600_000))
            return
        c.updated.append(prev + _ri(r, 60_000, 2 * 86_400_000))
        c.last_update = c.owner if r.random() < 0.5 else c.lab
        if c.status_text is not None and r.random() < 0.5:
            c.status_text = _pick(r, _STATUS_TEXTS)
        x = r.random()
        if x < 0.2 and c.files:
            f = _pick(r, c.files)
            f["size"] = _ri(r, 1_000_000, 50_000_000)  # a re-scan: same link, new size
        elif x < 0.3:
            ft = _pick(r, _TYPE_FILES[c.projecttype])
            name = f"{ft}_v{v}.stl"
            c.files.append(self._new_file(r, c.pid, ft, name))

    def _build_subs(self, index: int, version: int) -> _Subs:
        core = self._core(index, version)
        seed = self._seed
        pid = core.pid
        r = random.Random(f"{seed}:{index}:s")
        res = index % 10
        s = _Subs()
        invalid_tables = self._invalid_plan.get(index, ())
        created, u0 = core.created, core.updated[0]
        groups = (core.owner, core.lab)
        memos, attachments, histories = s.kinds["memo"], s.kinds["attachments"], s.kinds["histories"]
        used_memo: set[int] = set()
        used_att: set[int] = set()
        used_his: set[int] = set()
        used_ord: set[int] = set()
        used_grp: set[int] = set()

        # history: the project's creation
        histories.append(
            {
                "_id": pid,
                "sk": f"his:{_uniq(created, used_his)}",
                "updateType": "RAY_LINK_PROJECT_CREATE",
                "created": created,
                "data": {"name": f"project-{core.name_num}", "projecttype": core.projecttype},
            }
        )

        # memos (+ comments) and their ADDMEMO / ADDCOMMENT histories
        n_memo = _weighted(r, _MEMO_WEIGHTS)
        force_comment = res in (_Q_MEMO_TS_STR, _Q_CONTENTS)
        if force_comment:
            n_memo = max(1, n_memo)
        memo_ts = sorted(_fresh(r, created + 1, u0 - 1, used_memo) for _ in range(n_memo))
        for m, ts in enumerate(memo_ts):
            first = m == 0
            memo_str = (first and res == _Q_MEMO_TS_STR) or r.random() < 0.05
            text = _pick(r, _PHRASES)
            memo: dict[str, Any] = {
                "_id": pid,
                "sk": f"memo:{ts}",
                "content": _html(text),
                "created": _ts(ts, memo_str),
                "groupId": _pick(r, groups),
                "comments": [],
            }
            if r.random() < 0.3:
                memo["isarchive"] = r.random() < 0.2
            self._add_history(
                r, histories, pid, _uniq(ts + _ri(r, 0, 50), used_his),
                "RAY_LINK_PROJECT_ADDMEMO", {"content": _html(text), "type": "create"},
            )
            n_com = _weighted(r, _COMMENT_WEIGHTS)
            if first and force_comment:
                n_com = max(1, n_com)
            c_ts = ts
            for k in range(n_com):
                c_ts = c_ts + _ri(r, 1_000, max(1_001, (u0 - ts) // (n_com + 1)))
                first_c = first and k == 0
                c_str = (first_c and res == _Q_MEMO_TS_STR) or r.random() < 0.05
                c_key = "contents" if (first_c and res == _Q_CONTENTS) or r.random() < 0.2 else "content"
                c_text = _html(_pick(r, _PHRASES))
                memo["comments"].append({c_key: c_text, "created": _ts(c_ts, c_str), "groupId": _pick(r, groups)})
                if first_c or r.random() < 0.6:
                    self._add_history(
                        r, histories, pid, _uniq(c_ts + _ri(r, 0, 50), used_his),
                        "RAY_LINK_PROJECT_ADDCOMMENT", {"sk": f"memo:{ts}", "data": {"content": c_text}},
                    )
            memos.append(memo)
            if first:
                s.protected.add(memo["sk"])

        # attachments
        n_att = max(_weighted(r, _ATTACHMENT_WEIGHTS), invalid_tables.count("attachments"))
        for k in range(n_att):
            attachments.append(self._new_attachment(r, pid, _fresh(r, created + 1, u0, used_att), k))

        # other history entries
        for _ in range(_ri(r, 0, 4)):
            ut = _pick(r, _HISTORY_OTHER)
            ts = _fresh(r, created + 1, u0, used_his)
            self._add_history(r, histories, pid, ts, ut, self._history_data(r, ut, core))
        need_his = invalid_tables.count("histories")
        while len(histories) < need_his + 1:
            ut = _pick(r, _HISTORY_OTHER)
            self._add_history(r, histories, pid, _fresh(r, created + 1, u0, used_his), ut, self._history_data(r, ut, core))

        # orders
        n_ord = _weighted(r, _ORDER_WEIGHTS)
        if res in _Q_ORDERS:
            n_ord = max(1, n_ord)
        n_ord = max(n_ord, invalid_tables.count("orders"))
        for _ in range(n_ord):
            s.kinds["orders"].append(self._new_order(r, core, _fresh(r, created + 1, u0 - 1, used_ord), u0))

        # groups: the owner and one or two shared groups
        grp = s.kinds["groups"]
        grp.append(self._group(pid, "project:institute:owner", core.owner, f"project-{core.name_num}", core))
        grp.append(self._group(pid, f"project:institute:{_uniq(created + _ri(r, 1, 5_000), used_grp)}", core.lab, f"case-{core.name_num}", core))
        if r.random() < 0.3:
            other = _pick(r, self._institutes)
            grp.append(self._group(pid, f"project:institute:{_fresh(r, created + 1, u0, used_grp)}", other, f"{core.patient_id}", core))

        # one record of an undocumented kind in `undocumented_kind_share` of the projects
        share = self.config.undocumented_kind_share
        if int((index + 1) * share) > int(index * share):
            prefix = _pick(r, UNDOCUMENTED_SK_PREFIXES)
            ts = _ri(r, created + 1, u0)
            s.other.append(
                {
                    "_id": pid,
                    "sk": f"{prefix}:{ts}",
                    "device": _pick(r, ("RAYiOS", "RAYSCAN", "RAYFace")),
                    "created": ts,
                    "payload": {"points": _ri(r, 10_000, 900_000), "unit": "mm"},
                }
            )

        # invalid records: the last records of the planned tables cannot load: an attachment
        # breaks a schema rule, a history or order names another project (an unreadable
        # field alone no longer rejects a record: it loads NULL with a field issue)
        taken: dict[str, int] = {}
        for table in invalid_tables:
            recs = s.kinds[table]
            taken[table] = taken.get(table, 0) + 1
            rec = recs[-taken[table]]
            if table == "attachments":
                rec["size"] = -5
            else:  # histories, orders
                rec["_id"] = f"{pid}-elsewhere"
            s.invalid.append((table, rec["sk"]))
            s.protected.add(rec["sk"])

        # replay the project's events
        for v, event in enumerate(self._events.get(index, ())[:version], start=1):
            self._subs_event(s, core, v, event)

        for kind in SUB_KINDS:
            s.kinds[kind].sort(key=lambda d: d["sk"])
        return s

    @staticmethod
    def _add_history(
        r: random.Random, histories: list[dict[str, Any]], pid: str, ts: int, update_type: str, data: dict[str, Any]
    ) -> None:
        rec: dict[str, Any] = {"_id": pid, "sk": f"his:{ts}", "updateType": update_type, "created": ts, "data": data}
        if r.random() < 0.03:
            rec["created"] = str(ts)
        histories.append(rec)

    def _history_data(self, r: random.Random, update_type: str, core: _Core) -> dict[str, Any]:
        if update_type == "RAY_LINK_PROJECT_UPDATE":
            return {"status": {"code": "custom", "text": _pick(r, _STATUS_TEXTS)}, "lastUpdateGroupId": core.owner}
        if update_type == "RAY_LINK_PROJECT_ADDATTACHMENT":
            mime, ext = _pick(r, _MIMES)
            return {"name": f"file{_ri(r, 0, 9)}.{ext}", "filetype": mime, "size": _ri(r, 1_000, 9_000_000)}
        if update_type == "RAY_LINK_PROJECT_SHARE":
            return {"groupId": core.lab, "type": "share", "groups": [core.owner, core.lab]}
        # RAY_LINK_ORDER_STATUS: the body of PUT /order/{id}/status
        name, _ = _pick(r, _WORKFLOW_STEPS)
        return {"data": {"status": f"node_{core.created + _ri(r, 1, 99_999)}", "statusName": name}}

    def _new_attachment(self, r: random.Random, pid: str, ts: int, k: int) -> dict[str, Any]:
        mime, ext = _pick(r, _MIMES)
        rec = {
            "_id": pid,
            "sk": f"attachments:{ts}",
            "filetype": mime,
            "name": f"file{k}.{ext}",
            "size": _ri(r, 1_000, 9_000_000),
            "created": ts,
        }
        if r.random() < 0.03:
            rec["created"] = str(ts)
        return rec

    def _new_order(self, r: random.Random, core: _Core, ts: int, upper: int) -> dict[str, Any]:
        currency, productname, price = _pick(r, _PRODUCTS)
        steps = r.sample(_WORKFLOW_STEPS[:5], _ri(r, 3, 5))
        nodes = [{"id": f"node_{core.created - 86_400_000 * (i + 1)}", "name": n, "type": t} for i, (n, t) in enumerate(steps)]
        node = _pick(r, nodes)
        teeth = sorted(r.sample((11, 12, 13, 21, 22, 23, 36, 37, 46, 47), _ri(r, 1, 3)))
        treatments = [
            {"tooth": t, "type": _pick(r, _TREATMENT_TYPES), "material": _pick(r, _MATERIALS), "shade": _pick(r, ("A1", "A2", "A3", "B1"))}
            for t in teeth
        ]
        medical: dict[str, Any] = {"chiefComplaint": _pick(r, _PHRASES), "teeth": teeth}
        if r.random() < 0.5:
            medical["allergies"] = _pick(r, ([], ["latex"], ["nickel"]))
        return {
            "_id": core.pid,
            "sk": f"order:{ts}",
            "ownerGroupId": core.owner,
            "labId": core.lab,
            "status": node["id"],
            "statusName": node["name"],
            "statusType": node["type"],
            "product": {
                "currency": currency,
                "discount": str(_pick(r, (0, 5, 10, 15))),
                "price": price,
                "productname": productname,
            },
            "patientId": core.patient_id,
            "subject": {"name": core.subject_name, "birth": core.birth},
            "memo": _pick(r, ("주문 신청", "Urgent", "Please call before shipping", "")),
            "medicalRecords": medical,
            "treatments": treatments,
            "workflow": {"id": f"wf_{r.getrandbits(32):08x}", "nodes": nodes},
            "created": ts,
            "updated": ts + _ri(r, 0, max(0, upper - ts)),
        }

    @staticmethod
    def _group(pid: str, sk: str, group_id: str, name: str, core: _Core) -> dict[str, Any]:
        return {"_id": pid, "sk": sk, "group_id": group_id, "name": name, "patientId": core.patient_id}

    def _subs_event(self, s: _Subs, core: _Core, v: int, event: tuple[Any, ...]) -> None:
        pid = core.pid
        lo, hi = core.updated[v - 1], core.updated[v]
        kinds = s.kinds
        used: dict[str, set[int]] = {}

        def used_for(kind: str) -> set[int]:
            if kind not in used:
                used[kind] = {_sk_ts(d["sk"]) for d in kinds[kind] if d["sk"][-1].isdigit()}
            return used[kind]

        if event[0] == "upload":
            _, name, filetype, size = event
            kinds["attachments"].append(
                {"_id": pid, "sk": f"attachments:{_uniq(hi, used_for('attachments'))}", "filetype": filetype, "name": name, "size": size, "created": hi}
            )
            self._add_history(
                random.Random(0), kinds["histories"], pid, _uniq(hi, used_for("histories")),
                "RAY_LINK_PROJECT_ADDATTACHMENT", {"name": name, "filetype": filetype, "size": size},
            )
            return
        r = random.Random(f"{self._seed}:{pid}:{v}:s:{event[1]}")
        groups = (core.owner, core.lab)
        self._add_history(
            r, kinds["histories"], pid, _uniq(hi, used_for("histories")),
            "RAY_LINK_PROJECT_UPDATE", {"lastUpdateGroupId": core.last_update, "updated": hi},
        )
        actions = r.sample(
            ("add_memo", "add_comment", "edit_memo", "add_attachment", "remove_attachment", "add_order", "order_status", "remove_memo", "add_group"),
            _ri(r, 1, 3),
        )
        for action in actions:
            ts = _fresh(r, lo + 1, hi - 1, used_for("histories"))
            if action == "add_memo":
                text = _html(_pick(r, _PHRASES))
                m_ts = _fresh(r, lo + 1, hi - 1, used_for("memo"))
                kinds["memo"].append({"_id": pid, "sk": f"memo:{m_ts}", "content": text, "created": m_ts, "groupId": _pick(r, groups), "comments": []})
                self._add_history(r, kinds["histories"], pid, ts, "RAY_LINK_PROJECT_ADDMEMO", {"content": text, "type": "create"})
            elif action == "add_comment" and kinds["memo"]:
                memo = _pick(r, kinds["memo"])
                text = _html(_pick(r, _PHRASES))
                memo["comments"].append({"content": text, "created": ts, "groupId": _pick(r, groups)})
                self._add_history(r, kinds["histories"], pid, ts, "RAY_LINK_PROJECT_ADDCOMMENT", {"sk": memo["sk"], "data": {"content": text}})
            elif action == "edit_memo" and kinds["memo"]:
                memo = _pick(r, kinds["memo"])
                memo["content"] = _html(_pick(r, _PHRASES) + " (edited)")
                self._add_history(r, kinds["histories"], pid, ts, "RAY_LINK_PROJECT_UPDATEMEMO", {"sk": memo["sk"], "content": memo["content"], "type": "update"})
            elif action == "add_attachment":
                a_ts = _fresh(r, lo + 1, hi - 1, used_for("attachments"))
                att = self._new_attachment(r, pid, a_ts, len(kinds["attachments"]))
                kinds["attachments"].append(att)
                self._add_history(r, kinds["histories"], pid, ts, "RAY_LINK_PROJECT_ADDATTACHMENT", {"name": att["name"], "filetype": att["filetype"], "size": att["size"]})
            elif action in ("remove_attachment", "remove_memo"):
                kind = "attachments" if action == "remove_attachment" else "memo"
                candidates = [d for d in kinds[kind] if d["sk"] not in s.protected]
                if candidates:
                    victim = _pick(r, candidates)
                    kinds[kind].remove(victim)
                    self._add_history(r, kinds["histories"], pid, ts, f"RAY_LINK_PROJECT_REMOVE{kind.upper()}", {"sk": victim["sk"], "type": "delete"})
            elif action == "add_order":
                o_ts = _fresh(r, lo + 1, hi - 1, used_for("orders"))
                kinds["orders"].append(self._new_order(r, core, o_ts, hi))
            elif action == "order_status":
                candidates = [d for d in kinds["orders"] if d["sk"] not in s.protected]
                if candidates:
                    order = _pick(r, candidates)
                    node = _pick(r, order["workflow"]["nodes"])
                    order.update(status=node["id"], statusName=node["name"], statusType=node["type"], updated=hi)
                    self._add_history(r, kinds["histories"], pid, ts, "RAY_LINK_ORDER_STATUS", {"data": {"status": node["id"], "statusName": node["name"]}})
            elif action == "add_group":
                g_ts = _fresh(r, lo + 1, hi - 1, used_for("groups"))
                kinds["groups"].append(self._group(pid, f"project:institute:{g_ts}", _pick(r, self._institutes), core.patient_id, core))
                self._add_history(r, kinds["histories"], pid, ts, "RAY_LINK_PROJECT_SHARE", {"type": "share"})

    # ------------------------------------------------------------------ reading
    def _current(self, project_id: str) -> tuple[int, int] | None:
        i = self._index(project_id)
        return None if i is None else (i, self._ver(i))

    def project_ids(self) -> list[str]:
        return [self._pid(i) for i in self._order]

    def project_list(self) -> list[dict[str, Any]]:
        return [self._core(i, self._ver(i)).info() for i in self._order]

    def project_info(self, project_id: str) -> dict[str, Any] | None:
        cur = self._current(project_id)
        return None if cur is None else self._core(*cur).info()

    def sub_resource(self, project_id: str, kind: str) -> list[dict[str, Any]] | None:
        if kind not in SUB_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {SUB_KINDS}")
        cur = self._current(project_id)
        return None if cur is None else _clone(self._subs(*cur).kinds[kind])

    def aggregate(self, project_id: str) -> list[dict[str, Any]] | None:
        cur = self._current(project_id)
        if cur is None:
            return None
        s = self._subs(*cur)
        records = [self._core(*cur).info()]
        for k in SUB_KINDS:
            records.extend(_clone(s.kinds[k]))
        records.extend(_clone(s.other))
        records.sort(key=lambda d: d["sk"])  # one partition queried by sort key
        return records

    def files(self, project_id: str, filetype: str | None = None) -> dict[str, Any] | None:
        """``data`` of GET /file/{id}[/{type}]: {} when no (matching) files; None if no such project."""
        cur = self._current(project_id)
        if cur is None:
            return None
        recs = self._core(*cur).file_records()
        if filetype is not None:
            recs = [f for f in recs if f["filetype"] == filetype]
        return {"_id": project_id, "files": recs} if recs else {}

    def attachment_download(self, project_id: str, attachment_sk: str) -> dict[str, Any] | None:
        """The attachment object plus its temporary ``downloadLink``; None if no such attachment."""
        cur = self._current(project_id)
        if cur is None:
            return None
        for att in self._subs(*cur).kinds["attachments"]:
            if att["sk"] == attachment_sk:
                out: dict[str, Any] = _clone(att)
                out["downloadLink"] = self._attachment_link(project_id, att)
                return out
        return None

    def _attachment_link(self, pid: str, att: dict[str, Any]) -> str:
        sig = hashlib.sha256(f"{self._seed}:{pid}:{att['sk']}".encode()).hexdigest()
        return f"{LINK_HOST}/{pid}/attachments/{_sk_ts(att['sk'])}/{quote(str(att['name']))}?X-Amz-Expires=1800&X-Amz-Signature={sig}"

    # ------------------------------------------------------------------ changing
    def add_attachment(self, project_id: str, name: str, filetype: str, size: int) -> dict[str, Any] | None:
        """POST /project/{_id}/attachment/add: a new attachment record (None if no such project)."""
        i = self._index(project_id)
        if i is None:
            return None
        self._events[i] = self._events.get(i, ()) + (("upload", str(name), str(filetype), int(size)),)
        self.state += 1
        s = self._subs(i, self._ver(i))
        newest = max(s.kinds["attachments"], key=lambda d: _sk_ts(d["sk"]))
        added: dict[str, Any] = _clone(newest)
        return added

    def mutate(self, *, seed: int, update_share: float = 0.05, add_share: float = 0.01, remove_share: float = 0.01) -> MutationSummary:
        """Change the dataset in place, deterministically for (config.seed, history of calls, seed).

        ``update_share`` of the current projects get a new version (``updated`` bumped, a few
        sub-records added/removed/changed), ``remove_share`` vanish, ``add_share`` new projects
        appear (new indices, at the end of the list). A non-zero share touches at least one project.
        """
        r = random.Random(f"{self._seed}:mutate:{seed}")
        n = len(self._order)

        def how_many(share: float) -> int:
            if share <= 0 or n == 0:
                return 0
            return min(n, max(1, int(n * share + 0.5)))

        removed = set(r.sample(self._order, how_many(remove_share)))
        remaining = [i for i in self._order if i not in removed]
        updated = set(r.sample(remaining, min(len(remaining), how_many(update_share))))
        n_add = how_many(add_share)
        for i in updated:
            self._events[i] = self._events.get(i, ()) + (("mutate", seed),)
        added = list(range(self._next_index, self._next_index + n_add))
        self._next_index += n_add
        self._order = remaining + added
        if self._by_pid is not None:
            for i in removed:
                self._by_pid.pop(self._pid(i), None)
            for i in added:
                self._by_pid[self._pid(i)] = i
        self.state += 1
        return MutationSummary(
            updated=[self._pid(i) for i in remaining if i in updated],
            added=[self._pid(i) for i in added],
            removed=[self._pid(i) for i in sorted(removed)],
        )

    # ------------------------------------------------------------------ truth
    def _scan_subs(self, index: int, version: int) -> _Subs:
        """Sub-resources for a walk over every project: bypass the LRU when it could not hold them all."""
        if len(self._order) > 256:
            return self._build_subs(index, version)
        return self._subs(index, version)

    @property
    def invalid_record_keys(self) -> list[tuple[str, str, str]]:
        """(table, project_id, sk) of every schema-invalid record currently served."""
        out: list[tuple[str, str, str]] = []
        for i in self._order:
            if i in self._invalid_plan:
                pid = self._pid(i)
                out.extend((table, pid, sk) for table, sk in self._subs(i, self._ver(i)).invalid)
        return out

    def expected_rows(self, strategy: str = "aggregate") -> dict[str, int]:
        """Rows each warehouse table must hold after a full sync with ``strategy`` (the default one: aggregate).

        "aggregate": GET /project/{_id} per project (undocumented kinds land in other_records);
        "per_resource": GET /project/{_id}/<kind> per kind (undocumented kinds are unreachable).
        Invalid records are counted in rejected_records instead of their table.
        """
        if strategy not in ("aggregate", "per_resource"):
            raise ValueError(f"unknown strategy {strategy!r}")
        sums = [0] * len(_COUNT_FIELDS)
        for i in self._order:
            for k, n in enumerate(self._project_counts(i)):
                sums[k] += n
        t = dict(zip(_COUNT_FIELDS, sums))
        t["projects"] = len(self._order)
        if strategy == "per_resource":
            t["other_records"] = 0
        return {name: t[name] for name in TABLES}

    def project_rows(self, project_id: str) -> dict[str, int] | None:
        """Rows one project (as currently served) adds to each table after an "aggregate"
        sync, its rejected records included; None if no such project. Crash tests check
        with it that every project in a warehouse is whole."""
        i = self._index(project_id)
        if i is None:
            return None
        return {"projects": 1, **dict(zip(_COUNT_FIELDS, self._project_counts(i)))}

    def _project_counts(self, index: int) -> tuple[int, ...]:
        """Row counts of one project (see _COUNT_FIELDS), memoised per version (a small tuple)."""
        v = self._ver(index)
        hit = self._counts.get(index)
        if hit is not None and hit[0] == v:
            return hit[1]
        core = self._core(index, v)
        s = self._scan_subs(index, v)
        c = dict.fromkeys(_COUNT_FIELDS, 0)
        c["files"] = len(core.files)
        memos = s.kinds["memo"]
        c["memos"] = len(memos)
        c["memo_comments"] = sum(len(m["comments"]) for m in memos)
        for kind in ("attachments", "histories", "orders", "groups"):
            c[kind] = len(s.kinds[kind])
        c["other_records"] = len(s.other)
        for table, _ in s.invalid:
            c[table] -= 1
            c["rejected_records"] += 1
        counts = tuple(c[f] for f in _COUNT_FIELDS)
        self._counts[index] = (v, counts)
        return counts

    def patient_names(self) -> set[str]:
        """Every raw subject.name the server can hand out (projects and orders)."""
        names = set()
        for i in self._order:
            v = self._ver(i)
            names.add(self._core(i, v).subject_name)
            for o in self._scan_subs(i, v).kinds["orders"]:
                names.add(o["subject"]["name"])
        return names

    def download_links(self) -> set[str]:
        """Every downloadLink the server can hand out (project files and attachment downloads)."""
        links: set[str] = set()
        for i in self._order:
            v = self._ver(i)
            pid = self._pid(i)
            links.update(f["link"] for f in self._core(i, v).files)
            links.update(self._attachment_link(pid, a) for a in self._scan_subs(i, v).kinds["attachments"])
        return links
