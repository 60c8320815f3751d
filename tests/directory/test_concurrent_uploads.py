"""Uploads to one dataset at the same moment: each becomes one whole version, or is refused clearly; nothing mixes.

The uploads are sent together against the app served by uvicorn. Every accepted upload
must be a version of its own, numbered without gaps or repeats, whose snapshot holds
exactly that file's rows; a refused one must leave neither a row nor a file behind.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import date, timedelta

import httpx
import pyarrow.parquet as pq
from sqlalchemy import select

from directory.models import DatasetVersion
from tests.factories import citizen_id

UPLOADS = 5


def _file(tag: int, rows: int) -> tuple[bytes, set[str]]:
    """A CSV of ``rows`` citizens whose names carry ``tag``, so each snapshot can be traced to its upload."""
    lines, ids = ["citizen_id,name,district,birth_date"], set()
    for index in range(rows):
        born = date(1950, 1, 1) + timedelta(days=index)
        person = citizen_id(f"{110101 + tag:06d}{born:%Y%m%d}{index % 1000:03d}")
        ids.add(person)
        lines.append(f"{person},upload-{tag}-{index},{index % 7:02d},{born.isoformat()}")
    return ("\n".join(lines) + "\n").encode(), ids


def test_simultaneous_uploads_give_whole_versions_or_a_clear_refusal(directory, live_server, settings, database):
    directory.dataset()
    headers = directory.provider("PSB")
    files = {tag: _file(tag, 3000 + 700 * tag) for tag in range(UPLOADS)}
    barrier = threading.Barrier(UPLOADS)
    answers: dict[int, httpx.Response] = {}

    def upload(tag: int) -> None:
        content = files[tag][0]
        barrier.wait()
        answers[tag] = httpx.post(f"{live_server}/api/v1/datasets/PSB-HOUSEHOLD/versions",
                                  files={"file": (f"upload-{tag}.csv", content)}, headers=headers, timeout=120)

    threads = [threading.Thread(target=upload, args=(tag,)) for tag in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted = {tag: answer.json() for tag, answer in answers.items() if answer.status_code == 201}
    for tag, answer in answers.items():
        if answer.status_code != 201:  # the one acceptable refusal: a clear conflict, to be retried
            assert answer.status_code == 409, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert "try again" in answer.json()["detail"]
    assert accepted, "no upload was stored"
    assert sorted(version["number"] for version in accepted.values()) == list(range(1, len(accepted) + 1))

    with database.transaction(write=False) as session:
        stored = {version.number: version for version in session.execute(select(DatasetVersion)).scalars()}
    assert sorted(stored) == sorted(version["number"] for version in accepted.values())
    for tag, version in accepted.items():
        row = stored[version["number"]]
        expected_ids = files[tag][1]
        snapshot = settings.resolved_data_dir / row.path
        table = pq.read_table(snapshot)
        assert row.rows == version["rows"] == table.num_rows == len(expected_ids)
        assert set(table.column("citizen_id").to_pylist()) == expected_ids  # that upload's rows, and only them
        assert {name.split("-")[1] for name in table.column("name").to_pylist()} == {str(tag)}
        assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == row.sha256 == version["sha256"]
        assert row.source_name == f"upload-{tag}.csv"

    folder = settings.resolved_data_dir / "datasets" / "PSB-HOUSEHOLD"
    snapshots = sorted(path.name for path in folder.iterdir() if path.suffix == ".parquet")
    assert snapshots == [f"v{number:06d}.parquet" for number in sorted(stored)]  # no orphan snapshot
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]  # no temporary left over
    listed = httpx.get(f"{live_server}/api/v1/datasets/PSB-HOUSEHOLD/versions", headers=headers).json()["versions"]
    assert [version["number"] for version in listed] == sorted(stored, reverse=True)
    shown = httpx.get(f"{live_server}/api/v1/datasets/PSB-HOUSEHOLD", headers=headers).json()
    assert shown["latest_version"]["number"] == max(stored)
    verified = httpx.get(f"{live_server}/api/v1/audit/verify", headers=directory.factory.caller("DATA", "manager")).json()
    assert verified["ok"] is True


def test_a_large_upload_being_checked_does_not_hold_back_other_requests(directory, live_server, app, settings):
    # One request at a time may hold a session: an upload that kept its session while its file
    # was checked (seconds here, minutes for a large file) made every other request wait.
    app.state.database.request_concurrency = 1
    directory.dataset()
    headers = directory.provider("PSB")
    content, ids = _file(1, 600_000)
    answer: dict[str, httpx.Response] = {}
    uploading = threading.Thread(target=lambda: answer.setdefault("upload", httpx.post(
        f"{live_server}/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("large.csv", content)}, headers=headers,
        timeout=300)))
    uploading.start()
    folder = settings.resolved_data_dir / "datasets" / "PSB-HOUSEHOLD"
    for _ in range(3000):  # until the check has begun: its temporary snapshot exists
        if any(path.name.startswith(".upload-") for path in folder.glob(".*")) or not uploading.is_alive():
            break
        threading.Event().wait(0.01)
    assert uploading.is_alive(), "the upload ended before its check could be seen"
    read = httpx.get(f"{live_server}/api/v1/datasets/PSB-HOUSEHOLD", headers=headers, timeout=300)
    assert read.status_code == 200, read.text
    # Still checking: the read did not wait for the upload's version to be stored.
    assert any(path.name.startswith(".upload-") for path in folder.glob(".*")), "the read waited for the upload"
    uploading.join()
    assert answer["upload"].status_code == 201, answer["upload"].text
    assert answer["upload"].json()["rows"] == len(ids)
