"""Parsing OpenProject answers written from the API v3 description's models and examples
(openproject-v3.json: Project, ProjectCollection, MembershipSimpleCollectionResponse,
the categories/types/versions examples, ErrorResponse), no server involved."""

from __future__ import annotations

import asyncio
import copy

import orjson
import polars as pl
import pytest

from pwh.schemas.validate import split_valid
from pwh.sources.errors import ApiError, NotFoundError, TransientError
from pwh.sources.http import Answer
from pwh.sources.openproject.client import (
    UNDISCLOSED,
    NotVisibleError,
    OpenProjectApiError,
    OpenProjectClient,
    ProjectPayload,
    collection_elements,
    next_by_offset,
    read_hal,
)
from pwh.sources.paging import collect_pages
from pwh.transforms.openproject import render_value, transform_projects
from pwh.transforms.redact import redact_unknown_source

HAL = {"Content-Type": "application/hal+json"}


def answer(body, status: int = 200) -> Answer:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Answer(status, HAL, raw)


# The spec's `Project` example, verbatim but for the memberships link's quoting.
PROJECT = {
    "_type": "Project",
    "_links": {
        "self": {"href": "/api/v3/projects/1", "title": "Lorem"},
        "createWorkPackage": {"href": "/api/v3/projects/1/work_packages/form", "method": "post"},
        "createWorkPackageImmediate": {"href": "/api/v3/projects/1/work_packages", "method": "post"},
        "categories": {"href": "/api/v3/projects/1/categories"},
        "types": {"href": "/api/v3/projects/1/types"},
        "versions": {"href": "/api/v3/projects/1/versions"},
        "workPackages": {"href": "/api/v3/projects/1/work_packages"},
        "memberships": {"href": '/api/v3/memberships?filters=[{"project":{"operator":"=","values":["1"]}}]'},
        "customField456": {"href": "/api/v3/users/315", "title": "A user"},
        "parent": {"href": "/api/v3/projects/123", "title": "Parent project"},
        "ancestors": [
            {"href": "/api/v3/portfolios/2", "title": "Root portfolios"},
            {"href": "/api/v3/programs/12", "title": "Grandparent program"},
            {"href": "/api/v3/projects/123", "title": "Parent project"},
        ],
        "status": {"href": "/api/v3/project_statuses/on_track", "title": "On track"},
    },
    "id": 1,
    "identifier": "project_example",
    "name": "Project example",
    "active": True,
    "public": False,
    "statusExplanation": {"format": "markdown", "raw": "Everything **fine**", "html": "<p>Everything <strong>fine</strong></p>"},
    "description": {"format": "markdown", "raw": "Lorem **ipsum** dolor sit amet", "html": "<p>Lorem <strong>ipsum</strong> dolor sit amet</p>"},
    "createdAt": "2014-05-21T08:51:20.396Z",
    "updatedAt": "2014-05-21T08:51:20.396Z",
    "customField123": 123,
    "customComment123": "Why is the value 123?",
}

PROJECT_COLLECTION = {  # the spec's `ProjectCollection` example (abbreviated elements, one page)
    "_type": "Collection", "count": 2, "total": 2, "pageSize": 20, "offset": 1,
    "_embedded": {"elements": [
        {"_abbreviated": "Project resource shortened for brevity", "id": 1, "identifier": "initialproject",
         "name": "DeathStar construction", "active": True, "public": True},
        {"_abbreviated": "Project resource shortened for brevity", "id": 2, "identifier": "mysecret",
         "name": "Palpatine's secret plan", "active": True, "public": False},
    ]},
    "_links": {
        "self": {"href": "/api/v3/projects?filters=%5B%5D&offset=1&pageSize=20"},
        "jumpTo": {"href": "/api/v3/projects?filters=%5B%5D&offset=%7Boffset%7D&pageSize=20", "templated": True},
        "changeSize": {"href": "/api/v3/projects?filters=%5B%5D&offset=1&pageSize=%7Bsize%7D", "templated": True},
    },
}

MEMBERSHIPS = {  # `MembershipSimpleCollectionResponse` (with a next page), project 3's member
    "_type": "Collection", "total": 1, "count": 1, "pageSize": 20, "offset": 1,
    "_embedded": {"elements": [{
        "_type": "Membership", "id": 11, "createdAt": "2015-03-20T12:56:56.643Z", "updatedAt": "2018-12-20T18:16:11.643Z",
        "_links": {
            "self": {"href": "/api/v3/memberships/11", "title": "Darth Vader"},
            "schema": {"href": "/api/v3/memberships/schema"},
            "project": {"href": "/api/v3/projects/3", "title": "Death Start v3"},
            "principal": {"href": "/api/v3/users/5", "title": "Darth Vader"},
            "roles": [{"href": "/api/v3/roles/4", "title": "Sith Lord"}],
        },
    }]},
    "_links": {
        "self": {"href": "/api/v3/memberships"},
        "nextByOffset": {"href": "/api/v3/memberships?filters=%5B%5D&offset=2&pageSize=20"},
    },
}

CATEGORIES = [  # the categories example of /api/v3/projects/{id}/categories (project 11)
    {"_links": {"defaultAssignee": {"href": "/api/v3/users/42", "title": "John Sheppard"},
                "project": {"href": "/api/v3/projects/11", "title": "Example project"},
                "self": {"href": "/api/v3/categories/10", "title": "Category with assignee"}},
     "_type": "Category", "id": 10, "name": "Foo"},
    {"_links": {"project": {"href": "/api/v3/projects/11"}, "self": {"href": "/api/v3/categories/11"}},
     "_type": "Category", "id": 11, "name": "Bar"},
]
TYPES = [  # the types example
    {"_links": {"self": {"href": "/api/v3/types/1"}}, "_type": "Type", "color": "#ff0000",
     "createdAt": "2014-05-21T08:51:20.396Z", "id": 1, "isDefault": True, "isMilestone": False, "name": "Bug",
     "position": 1, "updatedAt": "2014-05-21T08:51:20.396Z"},
]
VERSIONS = [  # `VersionSimpleResponse`
    {"_type": "Version", "id": 3, "name": "v0.9.1-alpha",
     "description": {"format": "plain", "raw": "First draft", "html": "<p>First draft</p>"},
     "startDate": "2026-02-02", "endDate": "2026-02-09", "status": "closed", "sharing": "none",
     "createdAt": "2026-02-06T09:30:49.157Z", "updatedAt": "2026-02-10T09:53:21.620Z", "customField14": True,
     "_links": {"self": {"href": "/api/v3/versions/1", "title": "v0.1.0-alpha"},
                "definingProject": {"href": "/api/v3/projects/10", "title": "Death Star"},
                "customField23": {"href": "/api/v3/users/18", "title": "Mara Jade"}}},
]


def work_package(wid: int, project: int = 1, **changes) -> dict:
    """A work package after the WorkPackageModel (required links: self, schema, ancestors,
    author, priority, project, status, type)."""
    wp = {
        "_type": "WorkPackage", "id": wid, "lockVersion": 3, "subject": f"Task {wid}",
        "description": {"format": "markdown", "raw": "Do **it**", "html": "<p>Do <strong>it</strong></p>"},
        "scheduleManually": True, "readonly": False, "startDate": "2024-03-01", "dueDate": "2024-03-08",
        "date": None, "estimatedTime": "PT8H", "spentTime": "PT1H", "percentageDone": 40,
        "createdAt": "2024-03-01T10:00:00Z", "updatedAt": "2024-03-02T10:00:00+02:00",
        "customField1": "Ticket-9",
        "_links": {
            "self": {"href": f"/api/v3/work_packages/{wid}"},
            "schema": {"href": "/api/v3/work_packages/schemas/1-1"},
            "ancestors": [],
            "author": {"href": "/api/v3/users/3", "title": "Ada"},
            "assignee": {"href": None},
            "priority": {"href": "/api/v3/priorities/8", "title": "High"},
            "project": {"href": f"/api/v3/projects/{project}", "title": "P"},
            "status": {"href": "/api/v3/statuses/1", "title": "New"},
            "type": {"href": "/api/v3/types/1", "title": "Task"},
            "parent": {"href": None},
            "customField3": [{"href": "/api/v3/custom_options/1", "title": "Red"},
                             {"href": "/api/v3/custom_options/2", "title": "Blue"}],
        },
    }
    wp.update(changes)
    return wp


def transformed(payloads, account="acme"):
    """The frames that load, the records rejected, and the field issues of the rows that load."""
    batch = transform_projects(payloads, account=account)
    out, rejected, issues = {}, list(batch.rejected), []
    for name, buffer in batch.buffers.items():
        valid, bad = split_valid(buffer, redact_unknown_source)
        out[name] = valid
        rejected.extend(bad)
        issues.extend(buffer.row_issues())
    return out, rejected, issues


def frames(payloads, account="acme"):
    out, rejected, _ = transformed(payloads, account)
    return out, rejected


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (404, "NotFound", NotVisibleError),
        (403, "MissingPermission", OpenProjectApiError),
        (400, "InvalidQuery", OpenProjectApiError),
        (409, "UpdateConflict", OpenProjectApiError),
        (422, "PropertyConstraintViolation", OpenProjectApiError),
    ],
)
def test_error_answers_become_typed_errors(status, name, expected):
    body = {"_type": "Error", "errorIdentifier": f"urn:openproject-org:api:v3:errors:{name}", "message": "The specified project does not exist."}
    with pytest.raises(expected) as caught:
        read_hal(answer(body, status))
    # The status and the error's name; never the server's free-text message.
    assert str(caught.value) == f"HTTP {status} {name}"
    if expected is OpenProjectApiError:
        assert caught.value.code == name and caught.value.status == status
    assert isinstance(caught.value, NotFoundError) == (status == 404)


def test_multiple_errors_name_each_error_but_quote_no_message():
    body = {"_type": "Error", "errorIdentifier": "urn:openproject-org:api:v3:errors:MultipleErrors", "message": "Multiple field constraints have been violated.",
            "_embedded": {"errors": [{"_type": "Error", "errorIdentifier": "urn:openproject-org:api:v3:errors:PropertyConstraintViolation", "message": "Subject can't be blank."},
                                     {"_type": "Error", "errorIdentifier": "urn:openproject-org:api:v3:errors:PropertyConstraintViolation", "message": "Type is not set."}]}}
    with pytest.raises(OpenProjectApiError) as caught:
        read_hal(answer(body, 422))
    assert str(caught.value) == "HTTP 422 MultipleErrors (PropertyConstraintViolation)"


def test_a_406_page_is_permanent_and_a_200_html_page_is_transient():
    with pytest.raises(ApiError) as caught:
        read_hal(Answer(406, {"Content-Type": "text/html"}, b"<html>Not Acceptable</html>"))
    assert not isinstance(caught.value, TransientError) and caught.value.status == 406
    with pytest.raises(TransientError):
        read_hal(Answer(200, {"Content-Type": "text/html"}, b"<html>gateway</html>"))
    with pytest.raises(TransientError):
        read_hal(answer(orjson.dumps(PROJECT)[:100]))  # cut short


def test_an_error_object_in_a_200_answer_is_an_error():
    body = {"_type": "Error", "errorIdentifier": "urn:openproject-org:api:v3:errors:InternalServerError", "message": "boom"}
    with pytest.raises(OpenProjectApiError, match="InternalServerError"):
        read_hal(answer(body, 200))


# ------------------------------------------------------------------ collections and paging
def test_collection_elements_and_next_link():
    assert [e["id"] for e in collection_elements(PROJECT_COLLECTION)] == [1, 2]
    assert next_by_offset(PROJECT_COLLECTION) is None
    assert next_by_offset(MEMBERSHIPS) == "/api/v3/memberships?filters=%5B%5D&offset=2&pageSize=20"
    with pytest.raises(ApiError):
        collection_elements(PROJECT)  # not a Collection


def test_page_walk_follows_next_links_and_refuses_a_loop():
    pages = {
        "p1": {"_type": "Collection", "_embedded": {"elements": [1, 2]}, "_links": {"nextByOffset": {"href": "p2"}}},
        "p2": {"_type": "Collection", "_embedded": {"elements": [3]}, "_links": {"nextByOffset": {"href": "p3"}}},
        "p3": {"_type": "Collection", "_embedded": {"elements": []}, "_links": {}},
    }

    async def fetch(href):
        return pages[href]

    def same(element):
        return element

    assert asyncio.run(collect_pages(fetch, "p1", next_by_offset, collection_elements, same)) == [1, 2, 3]
    pages["p3"]["_embedded"]["elements"] = [4]
    pages["p3"]["_links"]["nextByOffset"] = {"href": "p1"}
    with pytest.raises(ApiError, match="loops"):
        asyncio.run(collect_pages(fetch, "p1", next_by_offset, collection_elements, same))


def test_links_are_resolved_on_the_instance_and_never_sent_elsewhere():
    client = OpenProjectClient.connect("https://op.example.org/pm/api/v3/", api_key="k", page_size=7)
    assert client.http.base_url == "https://op.example.org/pm"
    assert client.resolve("api/v3/projects") == "https://op.example.org/pm/api/v3/projects"
    assert client.resolve("/pm/api/v3/projects/1") == "https://op.example.org/pm/api/v3/projects/1"
    with pytest.raises(ApiError, match="another origin"):
        client.resolve("https://elsewhere.example.com/api/v3/projects")
    first = client.paged("/api/v3/projects/1/work_packages", {"filters": "[]"})
    assert "offset=1" in first and "pageSize=7" in first and "filters=%5B%5D" in first


# ------------------------------------------------------------------ transform
def test_the_spec_project_example_becomes_a_row_with_status_parent_and_custom_values():
    payload = ProjectPayload("1", PROJECT, {"work_packages": [], "versions": [], "categories": [], "types": [], "memberships": []})
    out, rejected = frames([payload])
    assert rejected == []
    [row] = out["projects"].to_dicts()
    assert row["account"] == "acme" and row["project_id"] == "1" and row["workspace_type"] == "Project"
    assert row["status_code"] == "on_track" and row["status_title"] == "On track"
    assert row["parent_id"] == 123 and row["parent_title"] == "Parent project" and row["parent_undisclosed"] is False
    assert orjson.loads(row["ancestor_ids"]) == [2, 12, 123]
    assert row["active"] is True and row["public"] is False
    assert row["description_raw"] == "Lorem **ipsum** dolor sit amet"
    assert row["description_html"] == "<p>Lorem <strong>ipsum</strong> dolor sit amet</p>"
    assert row["created_at"].isoformat() == "2014-05-21T08:51:20.396000+00:00"
    assert row["not_visible"] is None
    extra = orjson.loads(row["extra"])
    assert set(extra["_links"]) == {"createWorkPackage", "createWorkPackageImmediate"}  # unmodelled, kept
    custom = {(r["field"], r["kind"]): r for r in out["custom_values"].to_dicts()}
    assert set(custom) == {("customField123", "value"), ("customComment123", "comment"), ("customField456", "link")}
    assert custom[("customField123", "value")]["value_text"] == "123"
    assert custom[("customField123", "value")]["custom_field_id"] == 123
    assert custom[("customComment123", "comment")]["value_text"] == "Why is the value 123?"
    assert custom[("customField456", "link")]["value_text"] == "A user"
    assert orjson.loads(custom[("customField456", "link")]["value"]) == {"href": "/api/v3/users/315", "title": "A user"}
    assert {r["owner_type"] for r in custom.values()} == {"project"}


def test_an_undisclosed_parent_is_hidden_not_an_error():
    project = copy.deepcopy(PROJECT)
    hidden = {"href": UNDISCLOSED, "title": "Undisclosed - The selected parent is invisible because of lacking permissions."}
    project["_links"]["parent"] = hidden
    project["_links"]["ancestors"] = [hidden]
    project["_links"]["status"] = {"href": None}
    out, rejected = frames([ProjectPayload("1", project, {})])
    assert rejected == []
    [row] = out["projects"].to_dicts()
    assert row["parent_id"] is None and row["parent_title"] is None and row["parent_undisclosed"] is True
    assert orjson.loads(row["ancestor_ids"]) == [None]
    assert row["status_code"] is None and row["status_title"] is None


def test_linked_resources_from_the_spec_examples():
    project = copy.deepcopy(PROJECT)
    project["id"] = 11
    linked = {
        "work_packages": [work_package(5, project=11)],
        "versions": VERSIONS,
        "categories": CATEGORIES,
        "types": TYPES,
        "memberships": [],
    }
    out, rejected = frames([ProjectPayload("11", project, linked, not_visible=["memberships"])])
    assert rejected == []
    assert out["projects"]["not_visible"].to_list() == ['["memberships"]']
    [wp] = out["work_packages"].to_dicts()
    assert (wp["id"], wp["type_id"], wp["status_title"], wp["priority_id"], wp["author_id"], wp["assignee_id"]) == (5, 1, "New", 8, 3, None)
    assert str(wp["start_date"]) == "2024-03-01" and wp["estimated_time"] == "PT8H" and wp["percentage_done"] == 40
    assert wp["updated_at"].isoformat() == "2024-03-02T08:00:00+00:00"  # +02:00 normalised to UTC
    [version] = out["versions"].to_dicts()
    assert (version["id"], version["status"], version["defining_project_id"]) == (3, "closed", 10)
    assert "customField14" in orjson.loads(version["extra"])  # a version's custom fields stay in extra
    cats = out["categories"].sort("id").to_dicts()
    assert [(c["id"], c["name"], c["default_assignee_id"]) for c in cats] == [(10, "Foo", 42), (11, "Bar", None)]
    [typ] = out["types"].to_dicts()
    assert (typ["name"], typ["color"], typ["is_default"], typ["is_milestone"]) == ("Bug", "#ff0000", True, False)
    wp_custom = out["custom_values"].filter(pl.col("owner_type") == "work_package").sort("field").to_dicts()
    assert [(c["field"], c["kind"], c["value_text"]) for c in wp_custom] == [
        ("customField1", "value", "Ticket-9"), ("customField3", "link", "Red, Blue")]


def test_membership_example_rows():
    project = copy.deepcopy(PROJECT)
    project["id"] = 3
    out, rejected = frames([ProjectPayload("3", project, {"memberships": MEMBERSHIPS["_embedded"]["elements"]})])
    assert rejected == []
    [m] = out["memberships"].to_dicts()
    assert (m["id"], m["principal_type"], m["principal_id"], m["principal_title"]) == (11, "user", 5, "Darth Vader")
    assert orjson.loads(m["role_ids"]) == [4] and orjson.loads(m["role_titles"]) == ["Sith Lord"]


def test_a_subproject_work_package_listed_under_its_parent_is_left_to_its_own_project():
    out, rejected = frames([ProjectPayload("1", PROJECT, {"work_packages": [work_package(7, project=1), work_package(8, project=2)]})])
    assert rejected == [] and out["work_packages"]["id"].to_list() == [7]


def issue_map(issues):
    """(record key, field) → (reason, value description)."""
    return {(i.record_key, i.issue.field): (i.issue.reason, i.issue.value) for i in issues}


def test_unreadable_fields_load_null_and_only_a_record_that_cannot_be_keyed_or_placed_is_quarantined():
    # Issue 15, item 14: work package 9 used to be quarantined whole for its unreadable fields.
    bad = work_package(9, createdAt="yesterday", percentageDone="lots", startDate="2024-13-45", lockVersion=2**64,
                       scheduleManually="sometimes", description="plain text, not a Formattable")
    out_of_range = work_package(10, percentageDone=150)  # readable, but the schema's range check: quarantined as before
    unkeyed = work_package(11, id="eleven")
    unplaced = work_package(12)
    unplaced["_links"]["project"] = {"href": "/api/v3/projects/one", "title": "P"}
    not_a_link = work_package(13)
    not_a_link["_links"]["project"] = "/api/v3/projects/1"
    foreign_member = copy.deepcopy(MEMBERSHIPS["_embedded"]["elements"][0])  # of project 3
    linked = {"work_packages": [work_package(8), bad, out_of_range, "junk", unkeyed, unplaced, not_a_link],
              "types": [{"_type": "Type", "name": "no id"}], "memberships": [foreign_member],
              "categories": CATEGORIES[:1]}  # of project 11
    out, rejected, issues = transformed([ProjectPayload("1", PROJECT, linked)])

    wps = {row["id"]: row for row in out["work_packages"].to_dicts()}
    assert sorted(wps) == [8, 9]
    nine = wps[9]
    assert nine["subject"] == "Task 9" and nine["type_id"] == 1 and nine["due_date"].isoformat() == "2024-03-08"
    assert nine["created_at"] is nine["percentage_done"] is nine["start_date"] is nine["lock_version"] is None
    assert nine["schedule_manually"] is nine["description_raw"] is None
    assert issue_map(issues) == {
        ("1/work_packages/9", "createdAt"): ("expected an ISO 8601 date-time", "text of 9 character(s)"),
        ("1/work_packages/9", "percentageDone"): ("expected an integer", "text of 4 character(s)"),
        ("1/work_packages/9", "startDate"): ("expected a date YYYY-MM-DD", "'2024-13-45'"),
        ("1/work_packages/9", "lockVersion"): ("integer out of the 64-bit range", str(2**64)),
        ("1/work_packages/9", "scheduleManually"): ("expected a boolean", "text of 9 character(s)"),
        ("1/work_packages/9", "description"): ("expected an object", "text of 29 character(s)"),
    }
    # Work package 9 loads, so its custom values do (10's load too, as before: the schema
    # quarantines 10 after the transform, and its custom values are rows of their own).
    owners = set(out["custom_values"].filter(pl.col("owner_type") == "work_package")["owner_id"].to_list())
    assert owners == {8, 9, 10}

    by_key = {r.record_key: r.reasons for r in rejected}
    assert set(by_key) == {"1/work_packages/10", "1/work_packages/#3", "1/work_packages/eleven", "1/work_packages/12",
                           "1/work_packages/13", "1/types/None", "1/memberships/11", "1/categories/10"}
    assert "percentage_done" in by_key["1/work_packages/10"][0]
    # An id that cannot be read: the row's key is unknown, quarantined with the issue as a reason.
    assert by_key["1/work_packages/eleven"] == ("id: must not be empty", "id: expected an integer (value: text of 6 character(s))")
    assert by_key["1/types/None"] == ("id: must not be empty",)
    # Which project a record belongs to is not a value: a link that cannot be read, or names
    # another project, rejects the record.
    assert by_key["1/work_packages/12"] == ("_links.project: href '/api/v3/projects/one' does not end in an id",)
    assert by_key["1/work_packages/13"][0].startswith("_links.project: expected a link object")
    assert by_key["1/memberships/11"] == ("_links.project: membership of project 3, listed for project 1",)
    assert by_key["1/categories/10"] == ("_links.project: category of project 11, listed for project 1",)


def test_a_link_that_cannot_be_read_is_null_as_a_whole_with_one_issue():
    wp = work_package(5)
    wp["_links"].update({
        "type": {"href": "/api/v3/types/Task", "title": "Task"},       # no id: neither id nor title kept
        "status": {"href": "/api/v3/statuses/7", "title": {"en": "In progress"}},  # title unreadable alone
        "author": "Ada",                                               # not a link object
        "version": {"href": "/api/v3/versions/" + "9" * 25},            # beyond 64 bits
        "category": {"href": 17},
        "assignee": {"href": UNDISCLOSED, "title": "Undisclosed"},      # hidden: not an issue
    })
    version = copy.deepcopy(VERSIONS[0])
    version["_links"]["definingProject"] = {"href": "/api/v3/projects/ten", "title": "Death Star"}
    category = {"_type": "Category", "id": 10, "name": "Foo", "_links": ["not", "an", "object"]}
    out, rejected, issues = transformed([ProjectPayload("1", PROJECT, {
        "work_packages": [wp], "versions": [version], "categories": [category]})])
    assert rejected == []
    [row] = out["work_packages"].to_dicts()
    assert row["type_id"] is row["type_title"] is None
    assert (row["status_id"], row["status_title"]) == (7, None)
    assert row["author_id"] is row["version_id"] is row["category_id"] is row["assignee_id"] is None
    assert (row["priority_id"], row["priority_title"]) == (8, "High")
    assert out["versions"]["defining_project_id"].to_list() == [None]
    assert out["categories"].select("id", "name", "default_assignee_id").rows() == [(10, "Foo", None)]
    assert issue_map(issues) == {
        ("1/work_packages/5", "_links.type"): ("href does not end in an id", "text of 18 character(s)"),
        ("1/work_packages/5", "_links.status.title"): ("expected text", "an object of 1 key(s)"),
        ("1/work_packages/5", "_links.author"): ("expected a link object", "text of 3 character(s)"),
        ("1/work_packages/5", "_links.version"): ("href does not end in an id", "text of 42 character(s)"),
        ("1/work_packages/5", "_links.category"): ("href does not end in an id", "17"),
        ("1/versions/3", "_links.definingProject"): ("href does not end in an id", "text of 20 character(s)"),
        ("1/categories/10", "_links"): ("expected an object", "an array of 3 item(s)"),
    }


def test_a_project_with_unreadable_fields_and_links_loads_with_its_issues():
    # Issue 15, item 14: the project (and so its row in openproject.projects) used to be quarantined.
    project = copy.deepcopy(PROJECT)
    project.update(createdAt="21.05.2014 08:51", active="yes", statusExplanation="fine")
    project["_links"]["parent"] = {"href": "/api/v3/users/3", "title": "Ada"}  # not a workspace
    project["_links"]["ancestors"] = [
        {"href": "/api/v3/portfolios/2"}, {"href": 7}, {"title": "no href"}, {"href": UNDISCLOSED}, "/api/v3/programs/12"]
    project["_links"]["status"] = {"href": 5, "title": "On track"}
    out, rejected, issues = transformed([ProjectPayload("1", project, {})])
    assert rejected == []
    [row] = out["projects"].to_dicts()
    assert row["name"] == "Project example" and row["updated_at"].isoformat() == "2014-05-21T08:51:20.396000+00:00"
    assert row["created_at"] is row["active"] is row["status_explanation_raw"] is None
    assert row["parent_id"] is row["parent_title"] is None and row["parent_undisclosed"] is False
    assert row["status_code"] is row["status_title"] is None
    # Each ancestor keeps its place: undisclosed and unreadable ones are null (the issues say which).
    assert orjson.loads(row["ancestor_ids"]) == [2, None, None, None, None]
    assert issue_map(issues) == {
        ("1", "createdAt"): ("expected an ISO 8601 date-time", "'21.05.2014 08:51'"),
        ("1", "active"): ("expected a boolean", "text of 3 character(s)"),
        ("1", "statusExplanation"): ("expected an object", "text of 4 character(s)"),
        ("1", "_links.parent"): ("href is not a project, program or portfolio", "text of 15 character(s)"),
        ("1", "_links.ancestors[1]"): ("href is not a project, program or portfolio", "7"),
        ("1", "_links.ancestors[2]"): ("link has no href", "an object of 1 key(s)"),
        ("1", "_links.ancestors[4]"): ("expected a link object", "text of 19 character(s)"),
        ("1", "_links.status"): ("href is not text", "5"),
    }
    assert len(out["custom_values"]) == 3  # the project's custom values load with it


def test_a_membership_keeps_its_role_arrays_aligned_when_a_role_cannot_be_read():
    member = copy.deepcopy(MEMBERSHIPS["_embedded"]["elements"][0])
    member["_links"]["roles"] = [
        {"href": "/api/v3/roles/lord", "title": "Ghost"},  # unknown role: null in both arrays
        {"href": "/api/v3/roles/4", "title": "Sith Lord"},
        {"href": "/api/v3/roles/5", "title": ["Reader"]},  # the title alone is unreadable
        "/api/v3/roles/6",                                  # a bare href: a role without a title
    ]
    member["_links"]["principal"] = {"href": "/api/v3/users/vader", "title": "Darth Vader"}
    no_roles = copy.deepcopy(member)
    no_roles["id"] = 12
    no_roles["_links"]["roles"] = {"href": "/api/v3/roles/4"}
    project = copy.deepcopy(PROJECT)
    project["id"] = 3
    out, rejected, issues = transformed([ProjectPayload("3", project, {"memberships": [member, no_roles]})])
    assert rejected == []
    rows = {m["id"]: m for m in out["memberships"].to_dicts()}
    assert orjson.loads(rows[11]["role_ids"]) == [None, 4, 5, 6]
    assert orjson.loads(rows[11]["role_titles"]) == [None, "Sith Lord", None, None]
    assert rows[11]["principal_type"] is rows[11]["principal_id"] is rows[11]["principal_title"] is None
    assert rows[12]["role_ids"] is rows[12]["role_titles"] is None
    assert set(issue_map(issues)) == {
        ("3/memberships/11", "_links.roles[0]"), ("3/memberships/11", "_links.roles[2].title"),
        ("3/memberships/11", "_links.principal"), ("3/memberships/12", "_links.principal"),
        ("3/memberships/12", "_links.roles")}


def test_a_custom_value_that_cannot_be_rendered_or_stored_loads_with_an_issue():
    project = copy.deepcopy(PROJECT)
    # A non-finite number (a lenient JSON decoder's 1e400), and a "custom field" whose
    # number does not fit 64 bits: no custom field's, kept in extra.
    project["customField7"] = float("inf")
    project["customField" + "9" * 25] = "x"
    # Nested deeper than orjson writes (it reads up to 1,024 levels): cannot be stored.
    project["_links"]["customField8"] = orjson.loads(b"[" * 600 + b"]" * 600)
    out, rejected, issues = transformed([ProjectPayload("1", project, {})])
    assert rejected == []
    custom = {r["field"]: r for r in out["custom_values"].to_dicts()}
    assert custom["customField7"]["value_text"] is None and custom["customField7"]["custom_field_id"] == 7
    assert custom["customField8"]["value"] is custom["customField8"]["value_text"] is None
    assert custom["customField123"]["value_text"] == "123"  # the project's other custom values load as ever
    assert "customField" + "9" * 25 in orjson.loads(out["projects"]["extra"][0])
    assert issue_map(issues) == {
        ("1/project/1/customField7/value", "customField7"): ("expected text", "inf"),
        ("1/project/1/customField8/link", "_links.customField8"): (
            "cannot be stored as JSON (nested too deep or a number too large)", "an array of 1 item(s)"),
    }


def test_a_project_answered_under_another_id_is_rejected():
    out, rejected = frames([ProjectPayload("2", PROJECT, {})])
    assert out["projects"].height == 0 and rejected[0].reasons[0].startswith("id 1 is not the project 2")


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, None), (True, "true"), (12.5, "12.5"), (7, "7"), ("x", "x"),
     ({"format": "markdown", "raw": "**a**", "html": "<p>a</p>"}, "**a**"),
     ({"href": None}, None), ({"href": "/api/v3/users/1", "title": "Ada"}, "Ada"),
     ([{"href": "/a/1", "title": "A"}, {"href": "/a/2", "title": "B"}], "A, B")],
)
def test_custom_value_text_rendering(value, text):
    assert render_value(value) == text
