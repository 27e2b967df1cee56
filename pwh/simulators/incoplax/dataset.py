"""Deterministic Incoplax dataset: the projects of one domain, what the simulator serves,
and the truth a sync must reach.

Pure: no I/O, no wall clock. Projects live in a dict in creation order; every write (a
create, a change, a delete, a ``mutate`` round) advances a logical clock, so ``ext.ct``
and ``ext.lwt`` are ISO 8601 UTC strings with two decimals of seconds, as documented, and
the same seed and the same calls give the same bytes.

Quirks the real API shows and the dataset reproduces: empty ``opts.title`` /
``opts.comment``, non-ASCII names and comments, codes that look like numbers, projects
without ``opts`` at all, and (``invalid_records``) projects whose ``ext.ct`` is not a
time stamp, which a sync must load with ``created_at`` NULL and a field issue.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["DatasetConfig", "IncoplaxDataset", "MutationSummary", "iso_cs", "KEY_FIELDS"]

T0 = datetime(2019, 8, 27, 13, 38, 55, 140000, tzinfo=timezone.utc)
KEY_FIELDS = ("id", "code")  # what LOOKUP searches
MUTABLE_FIELDS = ("code", "name", "opts")

_NAMES = ("ProjectX", "ProjectY", "Проект Альфа", "Projekt Größe", "Site survey", "Call centre", "Ops 24/7")
_TITLES = ("", "", "Main line", "Support", "Отдел продаж", "Night shift")
_COMMENTS = ("", "", "migrated from v2", "temporary", "комментарий", "see ticket #42")


def iso_cs(moment: datetime) -> str:
    """``2019-08-27T13:40:02.87Z``: UTC, two decimals of seconds (the documented form)."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 10000:02d}Z"


@dataclass(frozen=True)
class DatasetConfig:
    seed: int = 7
    n_projects: int = 50
    invalid_records: int = 0  # projects whose ext.ct is not a time stamp (loaded NULL, with a field issue)


@dataclass
class MutationSummary:
    updated: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)


class IncoplaxDataset:
    def __init__(self, config: DatasetConfig) -> None:
        self.config = config
        self._rng = random.Random(f"{config.seed}:incoplax")
        self._clock = T0
        self._created = 0
        self.state = 0  # bumped on every write: simulators cache by it
        self.projects: dict[str, dict[str, Any]] = {}
        for _ in range(config.n_projects):
            self.create({})
        self.invalid_ids: list[str] = []
        ids = list(self.projects)
        for pid in random.Random(f"{config.seed}:invalid").sample(ids, min(config.invalid_records, len(ids))):
            self.projects[pid]["ext"]["ct"] = "27.08.2019 13:40"  # not ISO 8601
            self.invalid_ids.append(pid)

    # ------------------------------------------------------------------ clock and ids
    def _tick(self, *, creating: bool = False) -> str:
        # 0.01 s to ~90 s per write. A create may take no time: different projects with
        # equal ext.lwt occur. A change always moves the clock: at the API's 10 ms
        # resolution two writes of one project within 10 ms would leave ext.lwt equal,
        # which no ext.lwt cursor can see (see docs/incoplax.md).
        step = self._rng.choice((0, 1, 7, 150, 999, 9000) if creating else (1, 7, 150, 999, 9000))
        self._clock += timedelta(milliseconds=10 * step)
        return iso_cs(self._clock)

    def _new_id(self) -> str:
        digest = hashlib.blake2b(f"{self.config.seed}:{self._created}".encode(), digest_size=16).digest()
        return str(uuid.UUID(bytes=digest))

    # ------------------------------------------------------------------ CRUD
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """A new project; fields missing from ``body`` are generated."""
        r = self._rng
        index = self._created
        pid = self._new_id()
        self._created += 1
        now = self._tick(creating=True)
        project: dict[str, Any] = {
            "id": pid,
            "code": str(body.get("code", 5100 + index)),
            "name": body.get("name", f"{r.choice(_NAMES)} {index}"),
        }
        opts = body.get("opts")
        if opts is None and "opts" not in body:
            opts = None if index % 11 == 5 else {"title": r.choice(_TITLES), "comment": r.choice(_COMMENTS)}
        if opts is not None:
            project["opts"] = dict(opts)
        project["ext"] = {"ct": now, "lwt": now}
        self.projects[pid] = project
        self.state += 1
        return _copy(project)

    def get(self, pid: str) -> dict[str, Any] | None:
        project = self.projects.get(pid)
        return None if project is None else _copy(project)

    def update(self, pid: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Change fields of a project (``id`` and ``ext`` cannot be changed); None if unknown."""
        project = self.projects.get(pid)
        if project is None:
            return None
        for name in MUTABLE_FIELDS:
            if name not in body:
                continue
            if name == "opts":
                merged = dict(project.get("opts") or {})
                merged.update(body["opts"] or {})
                project["opts"] = merged
            else:
                project[name] = body[name]
        project["ext"]["lwt"] = self._tick()
        self.state += 1
        return _copy(project)

    def delete(self, pid: str) -> bool:
        if self.projects.pop(pid, None) is None:
            return False
        self._tick()
        self.state += 1
        return True

    def lookup(self, key: str) -> list[str]:
        """Ids of the projects whose id or code equals ``key``."""
        return [pid for pid, p in self.projects.items() if key in (p["id"], p["code"])]

    def mutate(self, *, seed: int, update_share: float = 0.05, add_share: float = 0.01,
               remove_share: float = 0.01) -> MutationSummary:
        """A round of upstream changes: change, add and delete shares of the projects."""
        r = random.Random(f"{self.config.seed}:mutate:{seed}")
        ids = list(self.projects)

        def how_many(share: float) -> int:
            return max(1, round(share * len(ids))) if share > 0 and ids else 0

        summary = MutationSummary()
        removed = set(r.sample(ids, min(how_many(remove_share), len(ids))))
        rest = [pid for pid in ids if pid not in removed]
        for pid in r.sample(rest, min(how_many(update_share), len(rest))):
            self.update(pid, {"name": f"{r.choice(_NAMES)} v{seed}", "opts": {"comment": r.choice(_COMMENTS)}})
            summary.updated.append(pid)
        for pid in sorted(removed):
            self.delete(pid)
            summary.removed.append(pid)
        for _ in range(how_many(add_share)):
            summary.added.append(self.create({})["id"])
        return summary

    # ------------------------------------------------------------------ truth
    def expected_rows(self) -> list[dict[str, Any]]:
        """The rows of ``incoplax.projects`` a sync of the current state must hold
        (without account and deleted_at), in id order; an invalid project's created_at is NULL."""
        rows = []
        for pid in sorted(self.projects):
            p = self.projects[pid]
            opts = p.get("opts") or {}
            rows.append({
                "project_id": pid, "code": p["code"], "name": p["name"],
                "title": opts.get("title"), "comment": opts.get("comment"),
                "created_at": None if pid in self.invalid_ids else _parse(p["ext"]["ct"]),
                "last_write_at": _parse(p["ext"]["lwt"]),
            })
        return rows


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _copy(project: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in project.items()}
