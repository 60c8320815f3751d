"""Registering, changing, retiring datasets over HTTP: who may, what is kept, what is audited."""

from __future__ import annotations

import json

from sqlalchemy import select

from govshare.models import AuditEntry
from tests.factories import dataset_document

PROBLEM = "application/problem+json"


def _problem(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"urn:govshare:problem:{type_}"
    return body


def _audit(database, subject: str) -> list[tuple[str, str, dict]]:
    with database.transaction(write=False) as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.seq)).scalars()
        return [(entry.action, entry.actor, json.loads(entry.details)) for entry in entries]


def test_a_provider_registers_its_departments_dataset_and_anyone_with_a_token_reads_it(client, factory, directory, database):
    provider = directory.provider("PSB")
    document = dataset_document(keywords=["residents"], legal_basis="Household Registration Regulation", category="basic")
    response = client.post("/api/v1/datasets", json=document, headers=provider)
    assert response.status_code == 201, response.text
    citizen_portal = factory.caller("DATA", "citizen_portal")
    shown = client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=citizen_portal).json()
    assert {key: shown[key] for key in document} == document
    assert shown["status"] == "active" and shown["revision"] == 1 and shown["latest_version"] is None
    assert shown["issued"] and shown["modified"]
    [(action, actor, details)] = _audit(database, "dataset:PSB-HOUSEHOLD")
    assert action == "dataset.registered" and actor.startswith("client:psb-") and details["revision"] == 1


def test_reading_the_directory_needs_a_token(client, directory):
    directory.dataset()
    assert _problem(client.get("/api/v1/datasets/PSB-HOUSEHOLD"), 401, "unauthenticated")
    assert _problem(client.get("/api/v1/datasets"), 401, "unauthenticated")


def test_a_provider_cannot_register_a_dataset_for_another_department(client, directory, database):
    body = _problem(client.post("/api/v1/datasets", json=dataset_document(department="CAB"), headers=directory.provider("PSB")), 403, "not-own-department")
    assert "CAB" in body["detail"]
    assert _audit(database, "dataset:PSB-HOUSEHOLD") == []


def test_a_provider_editing_another_departments_dataset_is_forbidden(client, directory):
    directory.dataset()
    other = directory.provider("CAB")
    changed = dataset_document(title="Taken over")
    _problem(client.put("/api/v1/datasets/PSB-HOUSEHOLD", json=changed, headers=other), 403, "not-own-department")
    _problem(client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"title": "Taken over"}, headers=other), 403, "not-own-department")
    _problem(client.post("/api/v1/datasets/PSB-HOUSEHOLD/retire", headers=other), 403, "not-own-department")
    _problem(client.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("a.csv", b"citizen_id\n")}, headers=other), 403, "not-own-department")
    shown = client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=other).json()
    assert shown["title"] == "Household registration" and shown["status"] == "active" and shown["revision"] == 1


def test_roles_other_than_provider_cannot_write_even_in_the_owning_department(client, factory, directory):
    directory.dataset()
    for role in ("demander", "manager", "service", "citizen_portal", "admin"):
        headers = factory.caller("PSB", role)
        _problem(client.post("/api/v1/datasets", json=dataset_document(code="PSB-OTHER"), headers=headers), 403, "forbidden")
        _problem(client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"title": "x"}, headers=headers), 403, "forbidden")
        _problem(client.post("/api/v1/datasets/PSB-HOUSEHOLD/retire", headers=headers), 403, "forbidden")
        _problem(client.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("a.csv", b"x\n")}, headers=headers), 403, "forbidden")
        assert client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=headers).status_code == 200


def test_a_duplicate_code_is_a_conflict(client, directory):
    directory.dataset()
    _problem(client.post("/api/v1/datasets", json=dataset_document(), headers=directory.provider("PSB")), 409, "dataset-exists")


def test_an_unknown_dataset_is_not_found(client, directory):
    headers = directory.provider("PSB")
    _problem(client.get("/api/v1/datasets/NOPE", headers=headers), 404, "dataset-not-found")
    _problem(client.patch("/api/v1/datasets/NOPE", json={"title": "x"}, headers=headers), 404, "dataset-not-found")
    _problem(client.get("/api/v1/datasets/NOPE/versions", headers=headers), 404, "dataset-not-found")


def test_an_invalid_dataset_is_refused_naming_the_field_and_the_rule(client, directory):
    headers = directory.provider("PSB")
    document = dataset_document()
    document["items"][1]["type"] = "text"
    body = _problem(client.post("/api/v1/datasets", json=document, headers=headers), 422, "schema-violation")
    assert body["errors"][0]["field"] == "items[1].type" and body["errors"][0]["rule"] == "enum"
    assert body["detail"].startswith("items[1].type:")
    missing = dataset_document()
    del missing["share_type"]
    body = _problem(client.post("/api/v1/datasets", json=missing, headers=headers), 422, "schema-violation")
    assert body["errors"][0] == {"field": "share_type", "rule": "required", "message": "'share_type' is a required property"}
    body = _problem(client.post("/api/v1/datasets", json=dataset_document(lookup_key="nobody"), headers=headers), 422, "invalid-dataset")
    assert body["detail"].startswith("lookup_key:")
    twice = dataset_document()
    twice["items"].append(dict(twice["items"][1]))
    body = _problem(client.post("/api/v1/datasets", json=twice, headers=headers), 422, "invalid-dataset")
    assert body["detail"].startswith("items[4].name:")
    assert client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=headers).status_code == 404


def test_updates_keep_every_revision_and_are_audited(client, directory, database):
    directory.dataset()
    headers = directory.provider("PSB")
    replaced = dataset_document(title="Household registration (national)")
    assert client.put("/api/v1/datasets/PSB-HOUSEHOLD", json=replaced, headers=headers).status_code == 200
    patched = client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"keywords": ["hukou"], "share_conditions": "a legal basis"}, headers=headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["revision"] == 3 and patched.json()["keywords"] == ["hukou"]
    removed = client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"keywords": None}, headers=headers).json()
    assert "keywords" not in removed and removed["revision"] == 4

    history = client.get("/api/v1/datasets/PSB-HOUSEHOLD/history", headers=headers).json()["revisions"]
    assert [(r["revision"], r["action"]) for r in history] == [(1, "registered"), (2, "updated"), (3, "updated"), (4, "updated")]
    assert history[0]["document"]["title"] == "Household registration"
    assert history[1]["document"]["title"] == "Household registration (national)"
    assert history[2]["document"]["keywords"] == ["hukou"]
    assert [action for action, _, _ in _audit(database, "dataset:PSB-HOUSEHOLD")] == ["dataset.registered"] + ["dataset.updated"] * 3


def test_a_patch_that_breaks_the_format_changes_nothing(client, directory):
    directory.dataset()
    headers = directory.provider("PSB")
    body = _problem(client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"share_type": "sometimes"}, headers=headers), 422, "schema-violation")
    assert body["errors"][0]["field"] == "share_type"
    _problem(client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"code": "PSB-OTHER"}, headers=headers), 422, "invalid-dataset")
    _problem(client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"department": "CAB"}, headers=headers), 422, "invalid-dataset")
    assert client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=headers).json()["revision"] == 1


def test_retiring_keeps_history_leaves_search_and_stops_changes(client, directory, database):
    directory.dataset()
    headers = directory.provider("PSB")
    retired = client.post("/api/v1/datasets/PSB-HOUSEHOLD/retire", headers=headers)
    assert retired.status_code == 200 and retired.json()["status"] == "retired" and retired.json()["retired_at"]
    assert client.get("/api/v1/datasets", headers=headers).json()["total"] == 0
    assert client.get("/api/v1/datasets?include_retired=true", headers=headers).json()["total"] == 1
    _problem(client.post("/api/v1/datasets/PSB-HOUSEHOLD/retire", headers=headers), 409, "dataset-retired")
    _problem(client.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"title": "x"}, headers=headers), 409, "dataset-retired")
    history = client.get("/api/v1/datasets/PSB-HOUSEHOLD/history", headers=headers).json()["revisions"]
    assert [r["action"] for r in history] == ["registered", "retired"]
    assert [action for action, _, _ in _audit(database, "dataset:PSB-HOUSEHOLD")] == ["dataset.registered", "dataset.retired"]
    assert client.get("/api/v1/audit/verify", headers=directory.factory.caller("DATA", "manager")).json()["ok"] is True
