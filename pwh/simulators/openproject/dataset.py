"""A deterministic OpenProject instance: what the simulator serves and the truth a sync
must reach. Pure (no I/O, no clock): everything derives from ``(seed, index)``; small
enough to hold in memory (tests and demos use tens to a few thousand projects).

Each quirk is forced on every tenth project (``index % 10``) so any instance of 10+
projects shows all of them:

- 1: abbreviated in the list (``_abbreviated``), complete only at ``/projects/{id}``
- 2: a customField link that is an array (multi-select list)
- 3: memberships answer 404 (the key lacks "view members")
- 4: its parent is undisclosed (``urn:openproject-org:api:v3:undisclosed``)
- 5, 6: its parent is an earlier, visible project
- 7: archived (``active: false``)
- 8: no status (``_links.status.href: null``)
- 9: a Program, not a Project
- 0: the most work packages (several pages), some closed (only ``filters=[]`` lists them)
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pwh.sources.openproject.client import UNDISCLOSED

API = "/api/v3"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
HIDDEN_PARENT_BASE = 90_000  # ids of parents the key may not see (never served)

_STATUSES = (("on_track", "On track"), ("at_risk", "At risk"), ("off_track", "Off track"), ("finished", "Finished"))
_WP_STATUSES = ((1, "New", False), (7, "In progress", False), (12, "Closed", True), (13, "Rejected", True))
_PRIORITIES = ((7, "Normal"), (8, "High"), (9, "Immediate"), (6, "Low"))
_TYPES = ((1, "Task", "#1A67A3", False), (2, "Milestone", "#35C53F", True), (3, "Phase", "#CC6600", False),
          (4, "Feature", "#336699", False), (5, "Bug", "#B00000", False))
_USERS = tuple((i, name) for i, name in enumerate(
    ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov",
     "Donald Knuth", "Margaret Hamilton", "Ken Thompson"), start=3))
_GROUPS = ((40, "Developers"), (41, "Reviewers"))
_ROLES = ((3, "Project admin"), (4, "Member"), (5, "Reader"))
_WORDS = ("migrate", "billing", "API", "dashboard", "report", "login", "search", "export", "cache", "backup",
          "Übersicht", "données", "設計")
_SHARINGS = ("none", "descendants", "hierarchy", "system")


def iso(ms_offset: int) -> str:
    """T0 + ms as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    moment = T0 + timedelta(milliseconds=ms_offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _link(href: str | None, title: str | None = None) -> dict[str, Any]:
    return {"href": href} if title is None else {"href": href, "title": title}


def _formattable(raw: str, fmt: str = "markdown") -> dict[str, str]:
    html = "" if not raw else "<p>" + raw.replace("**", "") + "</p>"
    return {"format": fmt, "raw": raw, "html": html}


@dataclass(frozen=True)
class DatasetConfig:
    seed: int = 7
    n_projects: int = 30
    max_work_packages: int = 23  # per project; index % 10 == 0 gets this many
    invalid_records: int = 0  # work packages with percentageDone 150 (quarantined by the schema)


@dataclass
class MutationSummary:
    updated: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    work_packages_changed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)


@dataclass
class SimProject:
    project: dict[str, Any]  # the full HAL object
    abbreviated: bool
    memberships_hidden: bool
    work_packages: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    types: list[dict[str, Any]]
    memberships: list[dict[str, Any]]

    @property
    def id(self) -> int:
        project_id: int = self.project["id"]
        return project_id


# Custom field definitions as the schemas show them: id → (name, type, location or None).
PROJECT_CUSTOM_FIELDS = {
    10: ("Budget (k€)", "Integer", None), 11: ("Billable", "Boolean", None),
    12: ("Budget note", "Formattable", None), 13: ("Sponsor", "User", "_links"),
    14: ("Markets", "[]CustomOption", "_links"), 15: ("Cost centre", "String", None),
}
WORK_PACKAGE_CUSTOM_FIELDS = {
    1: ("Ticket", "String", None), 2: ("Score", "Float", None), 3: ("Reviewer", "User", "_links"),
}


def custom_field_definition(field_id: int, name: str, kind: str, location: str | None) -> dict[str, Any]:
    definition: dict[str, Any] = {"type": kind, "name": name, "required": field_id == 15, "hasDefault": False,
                                  "writable": True, "visibility": "default"}
    if location:
        definition["location"] = location
        definition["_links"] = {"allowedValues": _link(f"{API}/principals" if kind == "User" else
                                                       f"{API}/custom_fields/{field_id}/items")}
    if kind == "User":  # what a real schema may embed: users with their e-mail (never stored)
        definition["_embedded"] = {"allowedValues": [{"_type": "User", "id": uid, "name": title,
                                                      "email": f"user{uid}@example.org"} for uid, title in _USERS[:2]]}
    return definition


class OpenProjectDataset:
    def __init__(self, config: DatasetConfig | None = None) -> None:
        self.config = config or DatasetConfig()
        self.projects: dict[int, SimProject] = {}
        # The instance's dimensions (tests edit them: rename a field, lock a user).
        self.project_custom_fields = dict(PROJECT_CUSTOM_FIELDS)
        self.work_package_custom_fields = dict(WORK_PACKAGE_CUSTOM_FIELDS)
        self.statuses = [
            {"_type": "Status", "id": sid, "name": name, "isClosed": closed, "isDefault": sid == 1,
             "isReadonly": closed, "defaultDoneRatio": 100 if closed else 0, "position": n, "color": "#1A67A3",
             "_links": {"self": _link(f"{API}/statuses/{sid}", name)}}
            for n, (sid, name, closed) in enumerate(_WP_STATUSES, start=1)
        ]
        self.users = [
            {"_type": "User", "id": uid, "name": name, "firstName": name.split()[0], "lastName": name.split()[-1],
             "login": name.split()[-1].lower(), "email": f"{name.split()[-1].lower()}@example.org", "admin": uid == 3,
             "avatar": f"https://example.org/avatars/{uid}.png", "status": "active", "language": "en",
             "identityUrl": None, "createdAt": iso(uid * 1000), "updatedAt": iso(uid * 1000 + 10),
             "_links": {"self": _link(f"{API}/users/{uid}", name), "lock": _link(f"{API}/users/{uid}/lock")}}
            for uid, name in _USERS
        ]
        self.invalid_record_keys: list[tuple[str, str, str]] = []  # (table, project id, key)
        self._next = {"project": 1, "wp": 1, "version": 1, "category": 1, "membership": 1}
        self._clock_ms = 0
        self.state = 0  # bumped on every change
        for index in range(self.config.n_projects):
            self._add_project(index)
        self._plant_invalid()

    # ------------------------------------------------------------------ building
    def _id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] = value + 1
        return value

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.config.seed, *parts)))

    def _add_project(self, index: int) -> SimProject:
        rng = self._rng(index, "p")
        pid = self._id("project")
        quirk = index % 10
        created = index * 3_600_000 + rng.randrange(3_600_000)
        updated = created + rng.randrange(1, 30 * 86_400_000)
        self._clock_ms = max(self._clock_ms, updated)
        href = f"{API}/projects/{pid}"
        links: dict[str, Any] = {
            "self": _link(href, f"Project {pid}"),
            "categories": _link(f"{href}/categories"),
            "types": _link(f"{href}/types"),
            "versions": _link(f"{href}/versions"),
            "workPackages": _link(f"{href}/work_packages"),
            "memberships": _link(f'{API}/memberships?filters=[{{"project":{{"operator":"=","values":["{pid}"]}}}}]'),
            "schema": _link(f"{API}/projects/schema"),
        }
        status = rng.choice(_STATUSES)
        links["status"] = _link(None) if quirk == 8 else _link(f"{API}/project_statuses/{status[0]}", status[1])
        visible = [p.id for p in self.projects.values()]
        if quirk == 4:
            hidden = _link(UNDISCLOSED, "Undisclosed - The selected parent is invisible because of lacking permissions.")
            links["parent"] = hidden
            links["ancestors"] = [hidden]
        elif quirk in (5, 6) and visible:
            parent = self.projects[rng.choice(visible)]
            links["parent"] = _link(f"{API}/projects/{parent.id}", parent.project["name"])
            links["ancestors"] = [*parent.project["_links"].get("ancestors", []), links["parent"]]
        else:
            links["parent"] = _link(None)
            links["ancestors"] = []
        user = rng.choice(_USERS)
        links["customField13"] = _link(f"{API}/users/{user[0]}", user[1])
        if quirk == 2:
            links["customField14"] = [_link(f"{API}/custom_options/{n}", f"Option {n}") for n in (1, 3)]
        name = f"{rng.choice(_WORDS).capitalize()} {rng.choice(_WORDS)} {pid}"
        project: dict[str, Any] = {
            "_type": "Program" if quirk == 9 else "Project",
            "id": pid,
            "identifier": f"project-{pid}",
            "name": name,
            "active": quirk != 7,
            "public": rng.random() < 0.3,
            "favorited": rng.random() < 0.1,
            "description": _formattable(f"About **{name}**" if rng.random() < 0.8 else ""),
            "statusExplanation": _formattable("Everything **fine**" if quirk != 8 else ""),
            "createdAt": iso(created),
            "updatedAt": iso(updated),
            "customField10": rng.randrange(1, 1000),
            "customField11": rng.random() < 0.5,
            "customField12": _formattable(f"Budget note {pid}"),
            "customComment10": None if rng.random() < 0.3 else f"Why {pid}?",
            "_links": links,
        }
        if rng.random() < 0.3:
            project["customField15"] = None  # a custom field without a value
        sim = SimProject(
            project=project,
            abbreviated=quirk == 1,
            memberships_hidden=quirk == 3,
            work_packages=[],
            versions=self._versions(rng, pid),
            categories=self._categories(rng, pid),
            types=self._types(rng),
            memberships=self._memberships(rng, pid, name),
        )
        count = self.config.max_work_packages if quirk == 0 else rng.randrange(0, self.config.max_work_packages + 1)
        for n in range(count):
            sim.work_packages.append(self._work_package(rng, sim, created + n * 60_000, closed_ok=True))
        self.projects[pid] = sim
        self.state += 1
        return sim

    def _versions(self, rng: random.Random, pid: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(rng.randrange(0, 4)):
            vid = self._id("version")
            start = rng.randrange(0, 200)
            out.append({
                "_type": "Version", "id": vid, "name": f"v{rng.randrange(1, 5)}.{vid}",
                "description": _formattable(f"Release {vid}", "plain"),
                "startDate": (T0 + timedelta(days=start)).date().isoformat(),
                "endDate": None if rng.random() < 0.3 else (T0 + timedelta(days=start + 14)).date().isoformat(),
                "status": rng.choice(("open", "locked", "closed")), "sharing": rng.choice(_SHARINGS),
                "createdAt": iso(start * 86_400_000), "updatedAt": iso(start * 86_400_000 + 5_000),
                "_links": {
                    "self": _link(f"{API}/versions/{vid}", f"v{vid}"),
                    "definingProject": _link(f"{API}/projects/{pid}"),
                    "availableInProjects": _link(f"{API}/versions/{vid}/projects"),
                },
            })
        return out

    def _categories(self, rng: random.Random, pid: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(rng.randrange(0, 4)):
            cid = self._id("category")
            links = {"self": _link(f"{API}/categories/{cid}"), "project": _link(f"{API}/projects/{pid}")}
            if rng.random() < 0.5:
                user = rng.choice(_USERS)
                links["defaultAssignee"] = _link(f"{API}/users/{user[0]}", user[1])
            out.append({"_type": "Category", "id": cid, "name": rng.choice(_WORDS), "_links": links})
        return out

    def _types(self, rng: random.Random) -> list[dict[str, Any]]:
        chosen = sorted(rng.sample(range(len(_TYPES)), rng.randrange(2, len(_TYPES) + 1)))
        return [
            {"_type": "Type", "id": tid, "name": name, "color": color, "position": tid, "isDefault": tid <= 2,
             "isMilestone": milestone, "createdAt": iso(0), "updatedAt": iso(1000),
             "_links": {"self": _link(f"{API}/types/{tid}", name)}}
            for tid, name, color, milestone in (_TYPES[i] for i in chosen)
        ]

    def _memberships(self, rng: random.Random, pid: int, project_name: str) -> list[dict[str, Any]]:
        principals = [("users", *u) for u in rng.sample(_USERS, rng.randrange(1, 4))]
        if rng.random() < 0.4:
            principals.append(("groups", *rng.choice(_GROUPS)))
        out = []
        for kind, principal_id, title in principals:
            mid = self._id("membership")
            roles = rng.sample(_ROLES, rng.randrange(1, 3))
            out.append({
                "_type": "Membership", "id": mid, "createdAt": iso(mid * 1000), "updatedAt": iso(mid * 1000 + 10),
                "_links": {
                    "self": _link(f"{API}/memberships/{mid}", title),
                    "schema": _link(f"{API}/memberships/schema"),
                    "project": _link(f"{API}/projects/{pid}", project_name),
                    "principal": _link(f"{API}/{kind}/{principal_id}", title),
                    "roles": [_link(f"{API}/roles/{r}", t) for r, t in roles],
                },
            })
        return out

    def _work_package(self, rng: random.Random, sim: SimProject, created: int, *, closed_ok: bool) -> dict[str, Any]:
        wid = self._id("wp")
        pid = sim.id
        status = rng.choice(_WP_STATUSES if closed_ok else _WP_STATUSES[:2])
        wtype = rng.choice(sim.types)
        priority = rng.choice(_PRIORITIES)
        author = rng.choice(_USERS)
        assignee = rng.choice(_USERS) if rng.random() < 0.7 else None
        version = rng.choice(sim.versions) if sim.versions and rng.random() < 0.5 else None
        category = rng.choice(sim.categories) if sim.categories and rng.random() < 0.5 else None
        siblings = [w for w in sim.work_packages if w["_links"]["parent"]["href"] is None]
        parent = rng.choice(siblings) if siblings and rng.random() < 0.3 else None
        start = T0 + timedelta(milliseconds=created)
        milestone = wtype["isMilestone"]
        links: dict[str, Any] = {
            "self": _link(f"{API}/work_packages/{wid}"),
            "schema": _link(f"{API}/work_packages/schemas/{pid}-{wtype['id']}"),
            "project": _link(f"{API}/projects/{pid}", sim.project["name"]),
            "type": _link(f"{API}/types/{wtype['id']}", wtype["name"]),
            "status": _link(f"{API}/statuses/{status[0]}", status[1]),
            "priority": _link(f"{API}/priorities/{priority[0]}", priority[1]),
            "author": _link(f"{API}/users/{author[0]}", author[1]),
            "assignee": _link(None) if assignee is None else _link(f"{API}/users/{assignee[0]}", assignee[1]),
            "responsible": _link(None),
            "version": _link(None) if version is None else _link(f"{API}/versions/{version['id']}", version["name"]),
            "category": _link(None) if category is None else _link(f"{API}/categories/{category['id']}", category["name"]),
            "parent": _link(None) if parent is None else _link(f"{API}/work_packages/{parent['id']}", parent["subject"]),
            "ancestors": [] if parent is None else [_link(f"{API}/work_packages/{parent['id']}", parent["subject"])],
        }
        wp: dict[str, Any] = {
            "_type": "WorkPackage", "id": wid, "lockVersion": rng.randrange(0, 5),
            "subject": f"{rng.choice(_WORDS).capitalize()} {rng.choice(_WORDS)} #{wid}",
            "description": _formattable(f"Do **{rng.choice(_WORDS)}**" if rng.random() < 0.7 else ""),
            "scheduleManually": rng.random() < 0.8, "readonly": status[2],
            "startDate": None if milestone else start.date().isoformat(),
            "dueDate": None if milestone else (start + timedelta(days=rng.randrange(1, 30))).date().isoformat(),
            "date": start.date().isoformat() if milestone else None,
            "estimatedTime": None if rng.random() < 0.4 else f"PT{rng.randrange(1, 40)}H",
            "spentTime": f"PT{rng.randrange(0, 10)}H",
            "percentageDone": rng.choice((None, 0, 10, 50, 90, 100)),
            "createdAt": iso(created), "updatedAt": iso(created + rng.randrange(1, 86_400_000)),
            "_links": links,
        }
        if rng.random() < 0.6:
            wp["customField1"] = f"Ticket-{wid}"
        if rng.random() < 0.4:
            wp["customField2"] = round(rng.uniform(0, 100), 2)
        if rng.random() < 0.3:
            who = rng.choice(_USERS)
            links["customField3"] = _link(f"{API}/users/{who[0]}", who[1])
        return wp

    def _plant_invalid(self) -> None:
        candidates = [(p, w) for p in self.projects.values() for w in p.work_packages]
        for project, wp in candidates[: self.config.invalid_records]:
            wp["percentageDone"] = 150  # the schema allows 0..100: quarantined, the rest loads
            for key in [k for k in wp if k.startswith("customField")]:
                del wp[key]
            wp["_links"].pop("customField3", None)
            self.invalid_record_keys.append(("work_packages", str(project.id), f"{project.id}/work_packages/{wp['id']}"))

    # ------------------------------------------------------------------ serving
    def project_ids(self) -> list[int]:
        return sorted(self.projects)

    def list_element(self, sim: SimProject) -> dict[str, Any]:
        if not sim.abbreviated:
            return sim.project
        p = sim.project
        return {"_abbreviated": "Project resource shortened for brevity", "_type": p["_type"], "id": p["id"],
                "identifier": p["identifier"], "name": p["name"], "active": p["active"], "public": p["public"],
                "_links": {"self": p["_links"]["self"]}}

    def project_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "_type": "Schema", "_dependencies": [],
            "id": {"type": "Integer", "name": "ID", "required": True, "hasDefault": False, "writable": False},
            "name": {"type": "String", "name": "Name", "required": True, "hasDefault": False, "writable": True},
            "_links": {"self": _link(f"{API}/projects/schema")},
        }
        for field_id, (name, kind, location) in self.project_custom_fields.items():
            schema[f"customField{field_id}"] = custom_field_definition(field_id, name, kind, location)
        return schema

    def work_package_schema(self, schema_id: str) -> dict[str, Any] | None:
        """The schema ``<project id>-<type id>``; None unless the project has that type."""
        pid, _, tid = schema_id.partition("-")
        found = self.projects.get(int(pid)) if pid.isdigit() else None
        if found is None or not any(str(t["id"]) == tid for t in found.types):
            return None
        schema: dict[str, Any] = {
            "_type": "Schema", "_dependencies": [],
            "subject": {"type": "String", "name": "Subject", "required": True, "hasDefault": False, "writable": True},
            "_links": {"self": _link(f"{API}/work_packages/schemas/{schema_id}")},
        }
        for field_id, (name, kind, location) in self.work_package_custom_fields.items():
            schema[f"customField{field_id}"] = custom_field_definition(field_id, name, kind, location)
        return schema

    def descendants(self, ancestor: int) -> set[int]:
        """Ids of the projects under ``ancestor`` (its subtree, itself excluded)."""
        href = f"{API}/projects/{ancestor}"
        return {pid for pid, sim in self.projects.items()
                if any(a.get("href") == href for a in sim.project["_links"].get("ancestors", []))}

    def expected_dimension_rows(self) -> dict[str, int]:
        """Rows of the dimension tables after a full sync (which reads every work package's schema)."""
        with_work = any(sim.work_packages for sim in self.projects.values())
        return {"custom_fields": len(self.project_custom_fields) + (len(self.work_package_custom_fields) if with_work else 0),
                "statuses": len(self.statuses), "users": len(self.users)}

    # ------------------------------------------------------------------ change
    def mutate(self, seed: int, update_share: float = 0.1, add_share: float = 0.0, remove_share: float = 0.0,
               work_package_share: float = 0.0) -> MutationSummary:
        """Touch (update), add and remove projects; updated ones get a new name, a new
        work package and a later ``updatedAt``. ``work_package_share`` of the other
        projects get one work package edited and nothing else: their own ``updatedAt``
        stays (as in OpenProject), they are listed in ``work_packages_changed``."""
        rng = self._rng("mutate", seed)
        ids = self.project_ids()
        summary = MutationSummary()
        removed = set(rng.sample(ids, round(len(ids) * remove_share)))
        updated = set(rng.sample(sorted(set(ids) - removed), round(len(ids) * update_share)))
        with_work = [pid for pid in sorted(set(ids) - removed - updated) if self.projects[pid].work_packages]
        for pid in sorted(rng.sample(with_work, min(len(with_work), round(len(ids) * work_package_share)))):
            self._clock_ms += 60_000
            wp = rng.choice(self.projects[pid].work_packages)
            wp["subject"] += " (edited)"
            wp["lockVersion"] += 1
            wp["updatedAt"] = iso(self._clock_ms)
            summary.work_packages_changed.append(str(pid))
        for pid in sorted(removed):
            del self.projects[pid]
            summary.removed.append(str(pid))
        for pid in sorted(updated):
            sim = self.projects[pid]
            self._clock_ms += 60_000
            sim.project["name"] = sim.project["name"] + " (renamed)"
            sim.project["updatedAt"] = iso(self._clock_ms)
            sim.work_packages.append(self._work_package(rng, sim, self._clock_ms, closed_ok=False))
            summary.updated.append(str(pid))
        for _ in range(round(len(ids) * add_share)):
            index = self._next["project"] - 1
            summary.added.append(str(self._add_project(index).id))
        self.state += 1
        return summary

    # ------------------------------------------------------------------ truth
    def expected_rows(self) -> dict[str, int]:
        """Rows each table must hold after a full sync of the current state."""
        invalid = len(self.invalid_record_keys)
        rows = dict.fromkeys(("projects", "work_packages", "versions", "categories", "types", "memberships",
                              "custom_values"), 0)
        for sim in self.projects.values():
            rows["projects"] += 1
            rows["work_packages"] += len(sim.work_packages)
            rows["versions"] += len(sim.versions)
            rows["categories"] += len(sim.categories)
            rows["types"] += len(sim.types)
            rows["memberships"] += 0 if sim.memberships_hidden else len(sim.memberships)
            rows["custom_values"] += _custom_count(sim.project) + sum(_custom_count(w) for w in sim.work_packages)
        rows["work_packages"] -= invalid
        rows["rejected_records"] = invalid
        return rows


def _custom_count(resource: dict[str, Any]) -> int:
    props = sum(1 for k in resource if k.startswith(("customField", "customComment")))
    return props + sum(1 for k in resource["_links"] if k.startswith("customField"))
