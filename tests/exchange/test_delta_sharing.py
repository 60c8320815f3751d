"""Delta Sharing: the real `delta-sharing` client reads exactly an extract grant's rows and columns.

The app is served by uvicorn on a loopback port whose URL is the issuer, so the
profile's endpoint and the file URLs the server signs are the ones the client calls.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import delta_sharing
import duckdb
import httpx
import pytest
from playwright.sync_api import expect
from requests.exceptions import HTTPError
from sqlalchemy import select, text

from exchange.sharing import service as sharing
from exchange.models import AccessLogEntry, SharingFile, SharingToken
from govshare import identities
from govshare.app import create_app
from govshare.keys import KeyStore
from govshare.models import AuditEntry
from tests.approvals.test_api import application_body
from tests.exchange.test_interfaces import _citizens, _csv
from tests.servers import in_thread
from tests.factories import DirectoryFactory

PASSWORD = "correct horse battery"


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def app(settings, port):
    """The app whose public URL (issuer) is the live server's, so profiles and file URLs point at it."""
    return create_app(settings.model_copy(update={"issuer": f"http://127.0.0.1:{port}"}))


@pytest.fixture
def server(app, port, client):
    with in_thread(app, port) as base:
        yield base


def _expected(source: Path, where: str = "district IN ('01', '02')", columns: str = "citizen_id, name, district") -> list[dict]:
    """The independent answer: DuckDB straight over the source file."""
    result = duckdb.connect().execute(f"SELECT {columns} FROM read_csv(?, all_varchar=true) WHERE {where} ORDER BY citizen_id",
                                      [str(source)])
    names = [column[0] for column in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def _records(frame) -> list[dict]:
    return sorted(frame.to_dict(orient="records"), key=lambda record: record["citizen_id"])


class Sharing:
    """PSB's household data; CAB holds an extract grant on three items in districts 01 and 02."""

    def __init__(self, client, factory, tmp_path: Path, database, app) -> None:
        self.http, self.database, self.app, self.tmp = client, database, app, tmp_path
        self.directory = DirectoryFactory(factory)
        self.directory.dataset("PSB-HOUSEHOLD", "PSB")
        self.source = tmp_path / "household.csv"
        self.source.write_bytes(_csv(_citizens(80)))
        assert self.directory.upload("PSB-HOUSEHOLD", self.source.read_bytes()).status_code == 201
        self.demander = factory.caller("CAB", "demander")
        self.manager = factory.caller("DATA", "manager")
        self.grant_id = self.granted(self.demander)

    def granted(self, demander, **changes) -> int:
        masks = changes.pop("masks", None)
        period = {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=60)).isoformat()}
        body = application_body(**{"delivery": "extract", "period": period, **changes})
        application = self.http.post("/api/v1/applications", json=body, headers=demander).json()
        decision = {"decision": "approve", **({"masks": masks} if masks else {})}
        assert self.http.post(f"/api/v1/applications/{application['id']}/decision", json=decision,
                              headers=self.manager).status_code == 200
        approved = self.http.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"},
                                  headers=self.directory.provider("PSB"))
        assert approved.status_code == 200, approved.text
        return approved.json()["grant_id"]

    def profile(self, grant_id: int | None = None, headers=None) -> dict:
        response = self.http.get(f"/api/v1/grants/{grant_id or self.grant_id}/sharing-profile", headers=headers or self.demander)
        assert response.status_code == 200, response.text
        return response.json()

    def profile_file(self, profile: dict, name: str = "cab") -> str:
        path = self.tmp / f"{name}.share"
        path.write_text(json.dumps(profile))
        return str(path)

    def table_url(self, profile_path: str, grant_id: int | None = None) -> str:
        return f"{profile_path}#grant-{grant_id or self.grant_id}.psb.psb-household"

    def query(self, profile: dict, body: dict, grant_id: int | None = None) -> httpx.Response:
        return httpx.post(f"{profile['endpoint']}/shares/grant-{grant_id or self.grant_id}/schemas/psb/tables/psb-household/query",
                          json=body, headers={"Authorization": f"Bearer {profile['bearerToken']}"})

    def ledger(self) -> list[AccessLogEntry]:
        self.app.state.ledger.flush()
        with self.database.transaction(write=False) as session:
            return list(session.execute(select(AccessLogEntry).order_by(AccessLogEntry.id)).scalars())

    def revoke(self, grant_id: int | None = None) -> None:
        response = self.http.post(f"/api/v1/grants/{grant_id or self.grant_id}/revoke", json={"reason": "service ended"},
                                  headers=self.manager)
        assert response.status_code == 200, response.text


@pytest.fixture
def world(client, factory, tmp_path, database, app, server) -> Sharing:
    return Sharing(client, factory, tmp_path, database, app)


def _lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_the_client_lists_and_reads_exactly_the_granted_rows_and_columns(world, server):
    profile = world.profile()
    assert profile["shareCredentialsVersion"] == 1 and profile["endpoint"] == f"{server}/delta-sharing"
    assert profile["expirationTime"] == f"{(date.today() + timedelta(days=61)).isoformat()}T00:00:00.000Z"
    path = world.profile_file(profile)
    client = delta_sharing.SharingClient(path)
    assert [share.name for share in client.list_shares()] == [f"grant-{world.grant_id}"]
    tables = client.list_all_tables()
    assert [(table.share, table.schema, table.name) for table in tables] == [(f"grant-{world.grant_id}", "psb", "psb-household")]

    frame = delta_sharing.load_as_pandas(world.table_url(path))
    assert list(frame.columns) == ["citizen_id", "name", "district"]
    assert _records(frame) == _expected(world.source)
    assert len(frame) == 40
    assert delta_sharing.get_table_version(world.table_url(path)) == 1

    # Stored hashed: the token itself is nowhere in the record store.
    with world.database.transaction(write=False) as session:
        stored = session.execute(select(SharingToken)).scalars().all()
        assert [token.token_hash for token in stored] == [sharing.token_hash(profile["bearerToken"])]
        assert session.execute(text("SELECT count(*) FROM sharing_tokens WHERE token_hash = :token"),
                               {"token": profile["bearerToken"]}).scalar_one() == 0


def test_every_file_served_is_on_the_ledger_and_in_the_citizens_access_log(world, factory):
    path = world.profile_file(world.profile())
    delta_sharing.load_as_pandas(world.table_url(path))
    delta_sharing.load_as_pandas(world.table_url(path))
    lines = [line for line in world.ledger() if line.kind == "extract"]
    assert len(lines) == 2
    with world.database.transaction(write=False) as session:
        file = session.execute(select(SharingFile)).scalar_one()  # built once, served twice
    assert {(line.grant_id, line.department_code, line.dataset_code, line.rows, line.extract_id) for line in lines} == {
        (world.grant_id, "CAB", "PSB-HOUSEHOLD", 40, file.id)}
    portal = factory.caller("DATA", "citizen_portal")
    inside, outside = _expected(world.source)[0]["citizen_id"], _expected(world.source, "district = '03'")[0]["citizen_id"]
    entries = world.http.get(f"/api/v1/citizens/{inside}/access-log", headers=portal).json()["entries"]
    assert [(entry["grant_id"], entry["kind"]) for entry in entries] == [(world.grant_id, "extract")] * 2
    assert world.http.get(f"/api/v1/citizens/{outside}/access-log", headers=portal).json()["entries"] == []


def test_a_revoked_grants_profile_is_refused_at_once_and_its_file_urls_too(world):
    profile = world.profile()
    path = world.profile_file(profile)
    assert len(delta_sharing.load_as_pandas(world.table_url(path))) == 40
    url = next(line["file"]["url"] for line in _lines(world.query(profile, {})) if "file" in line)
    assert httpx.get(url).status_code == 200
    world.revoke()
    with pytest.raises(HTTPError) as refused:
        delta_sharing.SharingClient(path).list_all_tables()
    assert refused.value.response.status_code == 403
    answer = world.query(profile, {})
    assert answer.status_code == 403 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errorCode"] == "PERMISSION_DENIED" and "revoked" in answer.json()["message"]
    assert answer.json()["type"] == "urn:govshare:problem:sharing-forbidden"
    assert httpx.get(url).status_code == 403
    assert world.http.get(f"/api/v1/grants/{world.grant_id}/sharing-profile", headers=world.demander).status_code == 403


def test_an_expired_grants_profile_is_refused(world):
    profile = world.profile()
    path = world.profile_file(profile)
    with world.database.transaction() as session:
        session.execute(text("UPDATE grants SET valid_from = :start, valid_until = :end WHERE id = :id"),
                        {"start": date.today() - timedelta(days=30), "end": date.today() - timedelta(days=1), "id": world.grant_id})
    with pytest.raises(HTTPError) as refused:
        delta_sharing.load_as_pandas(world.table_url(path))
    assert refused.value.response.status_code == 403
    assert "expired" in world.query(profile, {}).json()["message"]
    # The token itself ends with the grant, whatever becomes of the grant row.
    with world.database.transaction() as session:
        session.execute(text("UPDATE grants SET valid_from = :start, valid_until = :end WHERE id = :id"),
                        {"start": date.today(), "end": date.today() + timedelta(days=60), "id": world.grant_id})
        session.execute(text("UPDATE sharing_tokens SET expires_at = :past"),
                        {"past": datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1) if world.database.dialect == "sqlite"
                         else datetime.now(UTC) - timedelta(minutes=1)})
    answer = world.query(profile, {})
    assert answer.status_code == 401 and answer.json()["errorCode"] == "UNAUTHENTICATED"


def test_another_departments_profile_cannot_list_or_read_the_share(world, factory):
    other = factory.caller("EDU", "demander")
    other_grant = world.granted(other, row_filter={"district": {"eq": "03"}})
    assert world.http.get(f"/api/v1/grants/{world.grant_id}/sharing-profile", headers=other).status_code == 404
    other_profile = world.profile(other_grant, headers=other)
    other_path = world.profile_file(other_profile, "edu")
    client = delta_sharing.SharingClient(other_path)
    assert [table.share for table in client.list_all_tables()] == [f"grant-{other_grant}"]
    assert _records(delta_sharing.load_as_pandas(world.table_url(other_path, other_grant))) == _expected(world.source, "district = '03'")
    with pytest.raises(HTTPError) as refused:
        delta_sharing.load_as_pandas(world.table_url(other_path, world.grant_id))
    assert refused.value.response.status_code == 404
    listing = httpx.get(f"{other_profile['endpoint']}/shares/grant-{world.grant_id}/schemas",
                        headers={"Authorization": f"Bearer {other_profile['bearerToken']}"})
    assert listing.status_code == 404 and listing.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    # A file URL of CAB's share signed for EDU's token is no way in either.
    cab_profile = world.profile()
    url = next(line["file"]["url"] for line in _lines(world.query(cab_profile, {})) if "file" in line)
    with world.database.transaction(write=False) as session:
        edu_token = session.execute(select(SharingToken).where(SharingToken.grant_id == other_grant)).scalar_one()
    assert httpx.get(url.replace("token=", f"token={edu_token.id}&was=")).status_code == 403
    assert httpx.get(f"{other_profile['endpoint']}/shares", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    # An OAuth2 access token of the very department is not a sharing token either.
    oauth = httpx.get(f"{other_profile['endpoint']}/shares", headers=world.demander)
    assert oauth.status_code == 401 and oauth.json()["errorCode"] == "UNAUTHENTICATED"


def test_a_new_snapshot_is_a_new_table_version_and_a_named_version_stays_readable(world):
    path = world.profile_file(world.profile())
    first = _expected(world.source)
    newer = world.tmp / "household-2.csv"
    newer.write_bytes(_csv(_citizens(120)))
    assert world.directory.upload("PSB-HOUSEHOLD", newer.read_bytes()).status_code == 201
    assert delta_sharing.get_table_version(world.table_url(path)) == 2
    assert _records(delta_sharing.load_as_pandas(world.table_url(path))) == _expected(newer)
    assert len(_expected(newer)) == 60
    assert _records(delta_sharing.load_as_pandas(world.table_url(path), version=1)) == first
    with world.database.transaction(write=False) as session:
        made = dict(session.execute(text("SELECT number, created_at FROM dataset_versions")).all())
    between = made[2] if isinstance(made[2], datetime) else datetime.fromisoformat(str(made[2]))
    between = (between if between.tzinfo else between.replace(tzinfo=UTC)) - timedelta(microseconds=1)
    profile = json.loads(Path(path).read_text())
    as_of = world.query(profile, {"timestamp": between.isoformat()})
    assert as_of.status_code == 200 and as_of.headers["delta-table-version"] == "1"
    assert world.query(profile, {"timestamp": "yesterday"}).json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    with pytest.raises(HTTPError) as missing:
        delta_sharing.load_as_pandas(world.table_url(path), version=7)
    assert missing.value.response.status_code == 404


def test_a_long_read_refreshes_its_expired_file_urls(world, settings):
    profile = world.profile()
    started = world.query(profile, {"includeRefreshToken": True})
    assert started.status_code == 200 and started.headers["delta-table-version"] == "1"
    lines = _lines(started)
    file, end = lines[2]["file"], lines[3]["endStreamAction"]
    assert end["minUrlExpirationTimestamp"] == file["expirationTimestamp"]
    served = len(world.ledger())

    # The URL a long read holds has expired by now (made here as the server would have made it 20 minutes ago).
    keystore = KeyStore(settings.resolved_keys_dir)
    with world.database.transaction(write=False) as session:
        token = session.execute(select(SharingToken)).scalar_one()
        record = session.get(SharingFile, file["id"])
    old, _ = sharing.file_url(file=record, token=token, settings=world.app.state.settings, secret=sharing.url_secret(keystore),
                              now=datetime.now(UTC) - timedelta(minutes=20))
    assert httpx.get(old).status_code == 403
    # A signature altered to anything, non-ASCII included, is refused the same way (not a server error).
    current = httpx.URL(file["url"])
    for forged in ("0" * 64, "é" * 64, ""):
        assert httpx.get(current.copy_set_param("signature", forged)).status_code == 403
    assert httpx.get(file["url"]).status_code == 200

    refreshed = world.query(profile, {"refreshToken": end["refreshToken"]})
    assert refreshed.status_code == 200, refreshed.text
    renewed = _lines(refreshed)[2]["file"]
    assert renewed["id"] == file["id"]
    fetched = httpx.get(renewed["url"])
    assert fetched.status_code == 200 and len(fetched.content) == renewed["size"]
    assert len(world.ledger()) == served  # the same read: not a second delivery

    # A refresh token is bound to its read's sharing token, and to a grant still in force.
    stranger = world.query(world.profile(), {"refreshToken": end["refreshToken"]})
    assert stranger.status_code == 400 and stranger.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert world.query(profile, {"refreshToken": "forged"}).status_code == 400
    world.revoke()
    assert world.query(profile, {"refreshToken": end["refreshToken"]}).status_code == 403


def test_hints_help_but_never_widen_the_grants_scope(world):
    profile = world.profile()
    path = world.profile_file(profile)
    outside = json.dumps({"op": "equal", "children": [{"op": "column", "name": "district", "valueType": "string"},
                                                      {"op": "literal", "value": "03", "valueType": "string"}]})
    pruned = _lines(world.query(profile, {"jsonPredicateHints": outside, "limitHint": 1000}))
    assert [line for line in pruned if "file" in line] == []  # nothing of the grant can match: no file at all
    assert len(delta_sharing.load_as_pandas(world.table_url(path), jsonPredicateHints=outside)) == 0

    ungranted = json.dumps({"op": "greaterThan", "children": [{"op": "column", "name": "birth_date", "valueType": "date"},
                                                              {"op": "literal", "value": "1900-01-01", "valueType": "date"}]})
    widened = delta_sharing.load_as_pandas(world.table_url(path), jsonPredicateHints=ungranted, limit=1000)
    assert _records(widened) == _expected(world.source)
    assert list(widened.columns) == ["citizen_id", "name", "district"]

    limited = delta_sharing.load_as_pandas(world.table_url(path), limit=5)
    assert len(limited) == 5 and set(limited["district"]) <= {"01", "02"}
    assert [line for line in _lines(world.query(profile, {"limitHint": 0})) if "file" in line] == []
    stats = json.loads(next(line["file"]["stats"] for line in _lines(world.query(profile, {"limitHint": 1})) if "file" in line))
    assert stats["numRecords"] == 40 and stats["minValues"]["district"] == "01" and stats["maxValues"]["district"] == "02"

    invalid = world.query(profile, {"limitHint": -1})
    assert invalid.status_code == 400 and invalid.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert "limitHint" in invalid.json()["message"]


def test_masks_are_applied_to_what_the_client_reads(world, factory):
    masked_demander = factory.caller("HEALTH", "demander")
    grant = world.granted(masked_demander, masks={"name": {"keep_first": 3}, "citizen_id": "null"})
    path = world.profile_file(world.profile(grant, headers=masked_demander), "health")
    frame = delta_sharing.load_as_pandas(world.table_url(path, grant))
    expected = _expected(world.source, columns="NULL AS citizen_id, left(name, 3) || repeat('*', length(name) - 3) AS name, district")
    assert sorted(frame.to_dict(orient="records"), key=lambda row: (row["district"], row["name"])) == sorted(
        expected, key=lambda row: (row["district"], row["name"]))
    assert frame["name"].str.startswith("Cit").all() and not frame["name"].str.contains("Citizen").any()


def test_listings_are_paged_and_errors_carry_the_protocols_code(world):
    profile = world.profile()
    headers = {"Authorization": f"Bearer {profile['bearerToken']}"}
    shares = httpx.get(f"{profile['endpoint']}/shares", params={"maxResults": 1}, headers=headers)
    assert shares.json() == {"items": [{"name": f"grant-{world.grant_id}", "id": shares.json()["items"][0]["id"]}]}
    schemas = httpx.get(f"{profile['endpoint']}/shares/grant-{world.grant_id}/schemas", headers=headers).json()
    assert schemas["items"] == [{"name": "psb", "share": f"grant-{world.grant_id}"}]
    bad = httpx.get(f"{profile['endpoint']}/shares", params={"maxResults": 0}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE" and bad.json()["message"].startswith("maxResults")
    missing = httpx.get(f"{profile['endpoint']}/shares", headers={})
    assert missing.status_code == 401 and missing.json()["errorCode"] == "UNAUTHENTICATED"
    version = httpx.get(f"{profile['endpoint']}/shares/GRANT-{world.grant_id}/schemas/PSB/tables/PSB-HOUSEHOLD/version",
                        headers=headers)
    assert version.status_code == 200 and version.headers["delta-table-version"] == "1"  # names are case-insensitive
    changes = httpx.get(f"{profile['endpoint']}/shares/grant-{world.grant_id}/schemas/psb/tables/psb-household/changes",
                        params={"startingVersion": 1}, headers=headers)
    assert changes.status_code == 400 and "change data feed" in changes.json()["message"]


def test_each_sharing_token_has_the_interfaces_rate_limit(world):
    from exchange.ratelimit import RateLimiter

    world.app.state.rate_limiter = RateLimiter(rate=0.01, burst=3)
    profile, other = world.profile(), world.profile()
    answers = [httpx.get(f"{profile['endpoint']}/shares", headers={"Authorization": f"Bearer {profile['bearerToken']}"})
               for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["errorCode"] == "RESOURCE_LIMIT_EXCEEDED" and int(answers[-1].headers["retry-after"]) >= 1
    assert httpx.get(f"{other['endpoint']}/shares", headers={"Authorization": f"Bearer {other['bearerToken']}"}).status_code == 200


@pytest.mark.parametrize("roles,status", [(("demander",), 200), (("service",), 200), (("provider",), 403), (("manager",), 403),
                                          (("admin",), 403), (("citizen_portal",), 403)])
def test_only_the_grants_departments_demanders_and_services_get_a_profile(world, factory, roles, status):
    department = "PSB" if roles == ("provider",) else ("CAB" if roles in (("demander",), ("service",)) else "DATA")
    caller = factory.caller(department, *roles)
    response = world.http.get(f"/api/v1/grants/{world.grant_id}/sharing-profile", headers=caller)
    assert response.status_code == status, response.text
    assert world.http.get(f"/api/v1/grants/{world.grant_id}/sharing-profile").status_code == 401


def test_an_interface_grant_has_no_profile(world, factory):
    service = factory.caller("CAB", "service")
    interface = world.granted(world.demander, delivery="interface")
    assert world.http.get(f"/api/v1/grants/{interface}/sharing-profile", headers=service).status_code == 403


def test_the_sharing_page_is_for_the_departments_demanders_and_services_only(world, client, database, factory):
    from tests.approvals.test_views import csrf_of, sign_in

    factory.department("EDU")
    with database.transaction() as session:
        identities.add_user(session, name="chen", roles=["service"], password=PASSWORD, department_code="CAB")
        identities.add_user(session, name="li", roles=["demander"], password=PASSWORD, department_code="EDU")
        identities.add_user(session, name="maria", roles=["manager"], password=PASSWORD, department_code="DATA")
    html = {"Accept": "text/html"}
    assert client.get("/ui/sharing", headers=html, follow_redirects=False).status_code == 303
    assert sign_in(client, "maria", next="/ui/sharing").status_code == 303
    assert client.get("/ui/sharing", headers=html).status_code == 403
    client.cookies.clear()
    # Signing in without a page in mind leads a department's person to their page, not to the managers' queue.
    landed = sign_in(client, "li")
    assert (landed.status_code, landed.headers["location"]) == (303, "/ui/sharing")
    page = client.get("/ui/sharing", headers=html)
    assert page.status_code == 200 and f"grant-{world.grant_id}" not in page.text
    refused = client.post(f"/ui/sharing/grants/{world.grant_id}/profile", data={"csrf_token": csrf_of(page)}, headers=html)
    assert refused.status_code == 404  # another department's grant: as one that does not exist
    client.cookies.clear()
    assert sign_in(client, "chen", next="/ui/sharing").status_code == 303
    page = client.get("/ui/sharing", headers=html)
    assert client.post(f"/ui/sharing/grants/{world.grant_id}/profile", data={"csrf_token": "forged"}, headers=html).status_code == 403
    downloaded = client.post(f"/ui/sharing/grants/{world.grant_id}/profile", data={"csrf_token": csrf_of(page)}, headers=html)
    assert downloaded.status_code == 200
    assert downloaded.headers["content-disposition"] == f'attachment; filename="govshare-grant-{world.grant_id}.share"'
    profile = downloaded.json()
    with database.transaction(write=False) as session:
        assert session.execute(text("SELECT count(*) FROM sharing_tokens")).scalar_one() == 1
    assert world.query(profile, {}).status_code == 200


@pytest.mark.browser
def test_a_demander_downloads_a_profile_from_the_page_and_reads_with_it(world, server, page, database, screenshot, tmp_path,
                                                                      factory):
    factory.department("EDU")
    with database.transaction() as session:
        identities.add_user(session, name="chen", roles=["demander"], password=PASSWORD, department_code="CAB")
        identities.add_user(session, name="li", roles=["demander"], password=PASSWORD, department_code="EDU")
    page.goto(f"{server}/ui/sharing")
    assert page.url.startswith(f"{server}/ui/login")
    page.get_by_label("Name").fill("chen")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delta Sharing")
    row = page.locator(f'#sharing-grants tr[data-grant="{world.grant_id}"]')
    expect(row).to_contain_text(f"grant-{world.grant_id}.psb.psb-household")
    expect(page.get_by_role("link", name="Applications")).to_have_count(0)
    screenshot(page, "sharing")
    with page.expect_download() as download:
        row.get_by_role("button", name=f"Download profile for grant {world.grant_id}").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"govshare-grant-{world.grant_id}.share"
    assert _records(delta_sharing.load_as_pandas(world.table_url(str(saved)))) == _expected(world.source)

    # Another department's person sees none of CAB's grants, and cannot post for one.
    page.context.clear_cookies()
    page.goto(f"{server}/ui/sharing")
    page.get_by_label("Name").fill("li")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Your department holds no extract grants.")).to_be_visible()


# --- one token revoked on its own ---------------------------------------------------------------


def _token_id(world: Sharing, profile: dict) -> int:
    with world.database.transaction(write=False) as session:
        return session.execute(select(SharingToken.id).where(SharingToken.token_hash == sharing.token_hash(profile["bearerToken"]))
                               ).scalar_one()


def _tokens(world: Sharing, headers=None, grant_id: int | None = None) -> httpx.Response:
    return world.http.get(f"/api/v1/grants/{grant_id or world.grant_id}/sharing-tokens", headers=headers or world.demander)


def _revoke_token(world: Sharing, token_id: int, headers=None, grant_id: int | None = None) -> httpx.Response:
    return world.http.post(f"/api/v1/grants/{grant_id or world.grant_id}/sharing-tokens/{token_id}/revoke",
                           headers=headers or world.demander)


def _as(profile: dict, bearer: str | None = None) -> dict:
    return {"Authorization": f"Bearer {bearer or profile['bearerToken']}"}


def test_a_revoked_token_is_refused_like_an_unknown_one_and_its_file_urls_too_while_the_other_reads(world):
    leaked, kept = world.profile(), world.profile()
    leaked_id, kept_id = _token_id(world, leaked), _token_id(world, kept)
    started = world.query(leaked, {"includeRefreshToken": True})
    leaked_url = next(line["file"]["url"] for line in _lines(started) if "file" in line)
    refresh = next(line["endStreamAction"]["refreshToken"] for line in _lines(started) if "endStreamAction" in line)
    kept_url = next(line["file"]["url"] for line in _lines(world.query(kept, {})) if "file" in line)
    assert httpx.get(leaked_url).status_code == 200 and httpx.get(kept_url).status_code == 200

    revoked = _revoke_token(world, leaked_id)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["id"] == leaked_id and revoked.json()["state"] == "revoked" and revoked.json()["revoked_at"]

    endpoint, table = leaked["endpoint"], f"shares/grant-{world.grant_id}/schemas/psb/tables/psb-household"
    for method, path in (("GET", "shares"), ("GET", f"shares/grant-{world.grant_id}/all-tables"), ("GET", f"{table}/version"),
                         ("GET", f"{table}/metadata"), ("POST", f"{table}/query")):
        as_revoked = httpx.request(method, f"{endpoint}/{path}", headers=_as(leaked), json={} if method == "POST" else None)
        as_unknown = httpx.request(method, f"{endpoint}/{path}", headers=_as(leaked, "never-issued"),
                                   json={} if method == "POST" else None)
        assert as_revoked.status_code == 401 and as_revoked.json()["errorCode"] == "UNAUTHENTICATED", (path, as_revoked.text)
        assert (as_revoked.json(), as_revoked.headers["www-authenticate"]) == (as_unknown.json(), as_unknown.headers["www-authenticate"])
    assert world.query(leaked, {"refreshToken": refresh}).status_code == 401
    with pytest.raises(HTTPError) as refused:
        delta_sharing.SharingClient(world.profile_file(leaked, "leaked")).list_all_tables()
    assert refused.value.response.status_code == 401
    # The signed URL it was handed before is refused at once, though its signature and time are still good.
    for method in ("GET", "HEAD"):
        answer = httpx.request(method, leaked_url)
        assert answer.status_code == 403, answer.text
    assert "revoked" in httpx.get(leaked_url).json()["message"]

    # The grant and its other token go on.
    assert httpx.get(kept_url).status_code == 200
    assert world.query(kept, {}).status_code == 200
    assert _records(delta_sharing.load_as_pandas(world.table_url(world.profile_file(kept, "kept")))) == _expected(world.source)
    assert world.http.get(f"/api/v1/grants/{world.grant_id}", headers=world.demander).json()["state"] == "active"

    # Revoking twice is refused, as for grants.
    again = _revoke_token(world, leaked_id)
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"] == "urn:govshare:problem:sharing-token-revoked"


def test_the_token_list_shows_revocations_newest_first_and_never_a_token(world, factory):
    first, second = world.profile(), world.profile()
    first_id, second_id = _token_id(world, first), _token_id(world, second)
    assert _revoke_token(world, first_id).status_code == 200
    listed = _tokens(world)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [item["id"] for item in items] == [second_id, first_id]
    assert set(items[0]) == {"id", "grant_id", "state", "created_at", "created_by", "expires_at", "revoked_at", "revoked_by"}
    assert [(item["state"], item["revoked_at"] is None) for item in items] == [("active", True), ("revoked", False)]
    assert items[1]["revoked_by"] == items[1]["created_by"] and items[1]["created_by"].startswith("client:")
    assert items[0]["expires_at"].startswith((date.today() + timedelta(days=61)).isoformat())
    with world.database.transaction(write=False) as session:
        hashes = session.execute(select(SharingToken.token_hash)).scalars().all()
    for secret in (first["bearerToken"], second["bearerToken"], *hashes):
        assert secret not in listed.text
    # A manager sees and revokes any grant's tokens; the revocation and who made it are on the audit chain, which still holds.
    manager = world.manager
    assert [item["id"] for item in _tokens(world, manager).json()["items"]] == [second_id, first_id]
    assert _revoke_token(world, second_id, manager).json()["revoked_by"].startswith("client:")
    verified = world.http.get("/api/v1/audit/verify", headers=manager).json()
    assert verified["ok"] is True and verified["first_broken"] is None
    with world.database.transaction(write=False) as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.action == "sharing.token_revoked")
                                  .order_by(AuditEntry.seq)).scalars().all()
    assert [(entry.subject, json.loads(entry.details)["token"]) for entry in entries] == [
        (f"grant:{world.grant_id}", first_id), (f"grant:{world.grant_id}", second_id)]
    assert entries[0].actor == items[1]["revoked_by"] and entries[0].actor != entries[1].actor


def test_another_department_cannot_list_or_revoke_a_grants_tokens(world, factory):
    profile = world.profile()
    token_id = _token_id(world, profile)
    other = factory.caller("EDU", "demander")
    edu_grant = world.granted(other, row_filter={"district": {"eq": "03"}})
    unknown_grant = 999_999
    for caller in (other, factory.caller("PSB", "demander"), factory.caller("EDU", "service")):
        listed, missing = _tokens(world, caller), _tokens(world, caller, unknown_grant)
        assert (listed.status_code, listed.json()["type"]) == (missing.status_code, missing.json()["type"]) == (
            404, "urn:govshare:problem:grant-not-found")
        revoked, missing = _revoke_token(world, token_id, caller), _revoke_token(world, token_id, caller, unknown_grant)
        assert (revoked.status_code, revoked.json()["type"]) == (missing.status_code, missing.json()["type"]) == (
            404, "urn:govshare:problem:grant-not-found")
    # Roles that may not fetch a profile may not manage its tokens either, even in the grant's department.
    assert _tokens(world, factory.caller("CAB", "provider")).status_code == 403
    assert _revoke_token(world, token_id, factory.caller("CAB", "provider")).status_code == 403
    assert _tokens(world, factory.caller("DATA", "citizen_portal")).status_code == 403
    assert world.http.get(f"/api/v1/grants/{world.grant_id}/sharing-tokens").status_code == 401
    # A token of one grant is not revocable through another, even by its holder.
    edu_token = _token_id(world, world.profile(edu_grant, headers=other))
    wrong = _revoke_token(world, edu_token)
    assert wrong.status_code == 404 and wrong.json()["type"] == "urn:govshare:problem:sharing-token-not-found"
    assert _tokens(world, other, edu_grant).json()["items"][0]["state"] == "active"
    # Nothing was revoked: the token still reads.
    assert world.query(profile, {}).status_code == 200
    assert _tokens(world).json()["items"][0]["revoked_at"] is None


def test_a_service_revokes_its_departments_token_and_a_grant_revoked_since_still_lists_them(world, factory):
    service = factory.caller("CAB", "service")
    profile = world.profile(headers=service)
    token_id = _token_id(world, profile)
    world.revoke()
    listed = _tokens(world, service)
    assert listed.status_code == 200 and [item["id"] for item in listed.json()["items"]] == [token_id]
    assert _revoke_token(world, token_id, service).json()["state"] == "revoked"
    assert world.query(profile, {}).status_code == 401


def test_the_sharing_page_lists_a_grants_tokens_and_revokes_one(world, client, database):
    from tests.approvals.test_views import csrf_of, page_of, sign_in

    with database.transaction() as session:
        identities.add_user(session, name="chen", roles=["demander"], password=PASSWORD, department_code="CAB")
    leaked, kept = world.profile(), world.profile()
    leaked_id, kept_id = _token_id(world, leaked), _token_id(world, kept)
    html = {"Accept": "text/html"}
    assert sign_in(client, "chen", next="/ui/sharing").status_code == 303
    page = client.get("/ui/sharing", headers=html)
    listing = page_of(page).find("tr", data_grant=str(world.grant_id)).find("ul", class_="tokens")
    assert [item.get("data-token") for item in listing.find_all("li")] == [str(kept_id), str(leaked_id)]
    for secret in (leaked["bearerToken"], kept["bearerToken"]):
        assert secret not in page.text
    action = f"/ui/sharing/grants/{world.grant_id}/tokens/{leaked_id}/revoke"
    assert client.post(action, data={"csrf_token": "forged"}, headers=html).status_code == 403
    assert world.query(leaked, {}).status_code == 200
    done = client.post(action, data={"csrf_token": csrf_of(page)}, headers=html, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/ui/sharing")
    after = page_of(client.get("/ui/sharing", headers=html))
    assert f"Token {leaked_id} of grant {world.grant_id} revoked" in after.find(class_="flash").text
    row = after.find("li", data_token=str(leaked_id))
    assert row.find(class_="tag").text == "Revoked" and row.find("form") is None and "revoked" in row.text
    assert after.find("li", data_token=str(kept_id)).find("form").get("action") == f"/ui/sharing/grants/{world.grant_id}/tokens/{kept_id}/revoke"
    assert world.query(leaked, {}).status_code == 401 and world.query(kept, {}).status_code == 200
    # A second post (a double click) changes nothing and says so.
    again = client.post(action, data={"csrf_token": csrf_of(page)}, headers=html)
    assert again.status_code == 200 and "was revoked already" in page_of(again).find(class_="flash").text


@pytest.mark.browser
def test_a_demander_revokes_one_token_on_the_page(world, server, page, database, screenshot):
    with database.transaction() as session:
        identities.add_user(session, name="chen", roles=["demander"], password=PASSWORD, department_code="CAB")
    leaked, kept = world.profile(), world.profile()
    leaked_id, kept_id = _token_id(world, leaked), _token_id(world, kept)
    page.goto(f"{server}/ui/sharing")
    page.get_by_label("Name").fill("chen")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    tokens = page.get_by_role("list", name=f"Tokens of grant {world.grant_id}, newest first")
    expect(tokens.get_by_role("listitem")).to_have_count(2)
    screenshot(page, "tokens")
    tokens.get_by_role("button", name=f"Revoke token {leaked_id}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Token {leaked_id} of grant {world.grant_id} revoked")
    expect(tokens.locator(f'li[data-token="{leaked_id}"]')).to_contain_text("Revoked")
    expect(tokens.get_by_role("button", name=f"Revoke token {leaked_id}")).to_have_count(0)
    expect(tokens.get_by_role("button", name=f"Revoke token {kept_id}")).to_be_visible()
    screenshot(page, "revoked")
    assert world.query(leaked, {}).status_code == 401 and world.query(kept, {}).status_code == 200
