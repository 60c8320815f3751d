"""Explicit request and preview: a service asks, the citizen sees exactly what would be sent and decides, the service
reads the approved records once; plain reads of such a dataset answer 403."""

from __future__ import annotations

import threading
import pytest

from tests.exchange.test_consent import ConsentWorld
from tests.exchange.test_interfaces import _csv


class RequestWorld(ConsentWorld):
    def ask(self, key: str, headers=None):
        return self.http.post(f"/api/v1/exchange/{self.code}/requests", json={"key": key},
                              headers=self.service if headers is None else headers)

    def pending(self, citizen: str, headers=None):
        return self.http.get(f"/api/v1/citizens/{citizen}/requests", headers=self.portal if headers is None else headers)

    def decide(self, citizen: str, request_id: int, decision: str, headers=None):
        return self.http.post(f"/api/v1/citizens/{citizen}/requests/{request_id}/{decision}",
                              headers=self.portal if headers is None else headers)

    def read(self, request_id: int, headers=None):
        return self.http.get(f"/api/v1/exchange/requests/{request_id}", headers=self.service if headers is None else headers)


@pytest.fixture
def world(client, factory, tmp_path) -> RequestWorld:
    return RequestWorld(client, factory, tmp_path, consent_required=False, explicit_request=True)


def test_the_service_receives_exactly_the_preview_the_citizen_approved_and_only_once(world, app):
    asked = world.ask(world.alice)
    assert asked.status_code == 201, asked.text
    assert asked.json()["status"] == "awaiting_citizen"
    request_id = asked.json()["id"]
    assert world.read(request_id).status_code == 409  # awaiting the citizen
    listed = world.pending(world.alice)
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == request_id and item["department"] == "CAB" and item["status"] == "awaiting_citizen"
    person = world.rows[0]
    # Within the grant's scope: its three columns, not birth_date.
    assert item["preview"] == [{"citizen_id": person["citizen_id"], "name": person["name"], "district": person["district"]}]
    approved = world.decide(world.alice, request_id, "approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    delivered = world.read(request_id)
    assert delivered.status_code == 200, delivered.text
    body = delivered.json()
    assert body["dataset"] == world.code and body["key"] == world.alice and body["records"] == item["preview"]
    again = world.read(request_id)
    assert again.status_code == 410 and again.json()["type"] == "urn:govshare:problem:request-delivered"
    app.state.ledger.flush()
    log = world.http.get(f"/api/v1/citizens/{world.alice}/access-log", headers=world.portal).json()["entries"]
    assert [(entry["kind"], entry["rows"], entry["grant_id"]) for entry in log] == [("request", 1, world.grant_id)]
    # Delivered: the copy kept for the preview is gone.
    assert world.pending(world.alice).json()["items"][0]["preview"] is None


def test_what_is_sent_is_what_the_citizen_saw_even_if_the_data_changes_meanwhile(world, client, factory):
    request_id = world.ask(world.alice).json()["id"]
    preview = world.pending(world.alice).json()["items"][0]["preview"]
    changed = [dict(row, name=f"Renamed {row['name']}") for row in world.rows]
    assert client.post(f"/api/v1/datasets/{world.code}/versions", files={"file": ("data.csv", _csv(changed))},
                       headers=world.provider).status_code == 201
    world.decide(world.alice, request_id, "approve")
    assert world.read(request_id).json()["records"] == preview


def test_a_refused_request_answers_403_and_keeps_no_copy(world):
    request_id = world.ask(world.alice).json()["id"]
    refused = world.decide(world.alice, request_id, "refuse")
    assert refused.status_code == 200 and refused.json()["status"] == "refused" and refused.json()["preview"] is None
    answer = world.read(request_id)
    assert answer.status_code == 403 and answer.json()["type"] == "urn:govshare:problem:request-refused"
    assert world.decide(world.alice, request_id, "approve").status_code == 409  # decided already


def test_plain_reads_of_an_explicit_request_dataset_answer_403(world):
    for answer in (world.lookup(world.alice), world.batch([world.alice]),
                   world.http.get(f"/api/v1/exchange/{world.code}/records", headers=world.service),
                   world.http.get(f"/api/v1/exchange/{world.code}/records", headers={**world.service,
                                                                                    "Accept": "application/vnd.apache.arrow.stream"})):
        assert answer.status_code == 403, answer.text
        assert answer.json()["type"] == "urn:govshare:problem:explicit-request-required"


def test_a_request_is_within_the_grant_a_key_outside_it_is_a_404_and_asks_nobody(world):
    assert world.ask(world.outside).status_code == 404  # district 03, outside the grant's rows
    assert world.pending(world.outside).json()["items"] == []
    assert world.ask(world.alice, headers=world.other_service).status_code == 403  # EDU holds no grant


def test_another_departments_request_does_not_exist_for_it(world, factory):
    request_id = world.ask(world.alice).json()["id"]
    world.decide(world.alice, request_id, "approve")
    edu_service = world.other_service
    assert world.read(request_id, headers=edu_service).status_code == 404
    assert world.read(999999).status_code == 404
    assert world.read(request_id).status_code == 200  # the other department's attempt took nothing


def test_another_citizens_request_is_a_404_to_the_portal_acting_for_this_one(world):
    request_id = world.ask(world.alice).json()["id"]
    assert world.decide(world.bob, request_id, "approve").status_code == 404
    assert world.decide(world.bob, request_id, "refuse").status_code == 404
    assert world.pending(world.bob).json()["items"] == []
    assert world.pending(world.alice).json()["items"][0]["status"] == "awaiting_citizen"


@pytest.mark.parametrize("role", ["service", "demander", "provider", "manager", "admin"])
def test_only_the_citizen_portal_lists_and_decides_requests(world, factory, role):
    request_id = world.ask(world.alice).json()["id"]
    headers = factory.caller("CAB", role)
    assert world.pending(world.alice, headers=headers).status_code == 403
    assert world.decide(world.alice, request_id, "approve", headers=headers).status_code == 403
    assert world.decide(world.alice, request_id, "refuse", headers=headers).status_code == 403
    assert world.read(request_id).status_code == 409  # still awaiting


@pytest.mark.parametrize("role", ["citizen_portal", "demander", "provider", "manager"])
def test_only_services_ask_and_read(world, factory, role):
    headers = factory.caller("CAB", role)
    assert world.ask(world.alice, headers=headers).status_code == 403
    request_id = world.ask(world.alice).json()["id"]
    world.decide(world.alice, request_id, "approve")
    assert world.read(request_id, headers=headers).status_code == 403
    assert world.read(request_id).status_code == 200


@pytest.mark.parametrize("body", [{}, {"key": ""}, {"key": "1" * 65}, {"key": 12}, {"key": "a", "extra": 1}, []])
def test_a_request_with_bad_input_is_a_422_and_records_nothing(world, body):
    answer = world.http.post(f"/api/v1/exchange/{world.code}/requests", json=body, headers=world.service)
    assert answer.status_code == 422, answer.text
    assert world.pending(world.alice).json()["items"] == []


def test_a_request_on_a_dataset_without_explicit_request_is_a_422(client, factory, tmp_path):
    plain = RequestWorld(client, factory, tmp_path, consent_required=False)
    answer = plain.ask(plain.alice)
    assert answer.status_code == 422 and answer.json()["type"] == "urn:govshare:problem:invalid-request"


def test_a_request_needs_a_grant_giving_the_key_in_the_clear(world):
    edu_demander = world.other_demander
    world.grant(edu_demander, items=["district", "name"], row_filter=None)
    assert world.ask(world.alice, headers=world.other_service).status_code == 403


def test_a_revoked_grant_delivers_nothing_even_if_approved(world, database):
    request_id = world.ask(world.alice).json()["id"]
    world.decide(world.alice, request_id, "approve")
    assert world.http.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "ended"},
                           headers=world.manager).status_code == 200
    answer = world.read(request_id)
    assert answer.status_code == 403 and answer.json()["type"] == "urn:govshare:problem:no-active-grant"


def test_two_reads_at_once_deliver_once(world, app):
    request_id = world.ask(world.alice).json()["id"]
    world.decide(world.alice, request_id, "approve")
    barrier, answers = threading.Barrier(2), []

    def read():
        barrier.wait()
        answers.append(world.read(request_id).status_code)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 410]
    app.state.ledger.flush()
    log = world.http.get(f"/api/v1/citizens/{world.alice}/access-log", headers=world.portal).json()["entries"]
    assert [(entry["kind"], entry["rows"]) for entry in log] == [("request", 1)]  # one delivery, one line


def test_with_consent_required_too_a_request_needs_and_names_the_consent(client, factory, tmp_path, app):
    both = RequestWorld(client, factory, tmp_path, consent_required=True, explicit_request=True)
    assert both.ask(both.alice).status_code == 404  # no consent: as outside the grant
    consent_id = both.consent(both.alice).json()["id"]
    request_id = both.ask(both.alice).json()["id"]
    both.decide(both.alice, request_id, "approve")
    both.withdraw(both.alice, consent_id)
    assert both.read(request_id).status_code == 404  # withdrawn since: not sent
    consent_id = both.consent(both.alice).json()["id"]
    assert both.read(request_id).status_code == 200
    app.state.ledger.flush()
    log = both.http.get(f"/api/v1/citizens/{both.alice}/access-log", headers=both.portal).json()["entries"]
    assert [entry["consent_id"] for entry in log if entry["kind"] == "request" and entry["rows"] == 1] == [consent_id]


def test_the_preview_is_masked_as_the_grant_masks(world):
    """EDU's grant masks the name: its preview (and so its delivery) shows the masked name, never the clear one."""
    world.grant(world.other_demander, masks={"name": {"keep_first": 1}}, row_filter=None)
    request_id = world.ask(world.carol, headers=world.other_service).json()["id"]
    [item] = world.pending(world.carol).json()["items"]
    name = world.rows[4]["name"]
    assert item["preview"] == [{"citizen_id": world.carol, "name": name[0] + "*" * (len(name) - 1), "district": "01"}]
    world.decide(world.carol, request_id, "approve")
    assert world.read(request_id, headers=world.other_service).json()["records"] == item["preview"]
