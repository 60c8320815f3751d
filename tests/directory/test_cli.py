"""``govshare datasets``: run as a user runs it, the installed script in a subprocess."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from govshare.models import AuditEntry
from tests.factories import citizen_id, dataset_document

GOVSHARE = str(Path(sys.executable).parent / "govshare")


def run(settings, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home),
                   "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    return subprocess.run([GOVSHARE, *args], env=environment, capture_output=True, text=True, timeout=120)


def _write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_register_list_show_and_upload_from_the_command_line(settings, factory, database, tmp_path):
    factory.department("PSB")
    dataset_file = _write(tmp_path, "household.json", json.dumps(dataset_document()))
    registered = run(settings, "datasets", "register", dataset_file)
    assert registered.returncode == 0, registered.stderr
    assert "PSB-HOUSEHOLD registered for PSB" in registered.stdout

    listed = run(settings, "datasets", "list", "--q", "household")
    assert listed.returncode == 0 and listed.stdout.startswith("PSB-HOUSEHOLD\tPSB\tconditional\tno data\t")
    as_json = json.loads(run(settings, "datasets", "list", "--json").stdout)
    assert as_json["total"] == 1 and as_json["facets"]["department"] == {"PSB": 1}

    rows = "citizen_id,name,district,birth_date\n" + "".join(
        f"{citizen_id(f'11010119900101{i:03d}')},Person {i},0{i % 3},1990-01-01\n" for i in range(100)
    )
    uploaded = run(settings, "datasets", "upload", "PSB-HOUSEHOLD", _write(tmp_path, "people.csv", rows))
    assert uploaded.returncode == 0, uploaded.stderr
    version = json.loads(uploaded.stdout)
    assert version["number"] == 1 and version["rows"] == 100
    assert "checking people.csv" in uploaded.stderr  # the progress bar

    shown = json.loads(run(settings, "datasets", "show", "PSB-HOUSEHOLD").stdout)
    assert shown["latest_version"]["rows"] == 100 and shown["latest_version"]["quality"]["items"]["district"]["distinct"] == 3

    with database.transaction(write=False) as session:
        actors = set(session.execute(select(AuditEntry.actor).where(AuditEntry.subject == "dataset:PSB-HOUSEHOLD")).scalars())
    assert actors == {f"cli:{getpass.getuser()}"}


def test_the_command_line_refuses_bad_files_and_other_departments(settings, factory, tmp_path):
    factory.department("PSB")
    factory.department("CAB")
    dataset_file = _write(tmp_path, "household.json", json.dumps(dataset_document()))
    other = run(settings, "datasets", "register", dataset_file, "--as-department", "CAB")
    assert other.returncode == 1 and "CAB cannot register" in other.stderr
    assert run(settings, "datasets", "register", dataset_file).returncode == 0

    invalid = dataset_document(code="PSB-BAD")
    invalid["items"][0]["type"] = "text"
    refused = run(settings, "datasets", "register", _write(tmp_path, "bad.json", json.dumps(invalid)))
    assert refused.returncode == 1 and "items[0].type" in refused.stderr

    bad_rows = f"citizen_id,birth_date\n{citizen_id('11010119900101001')},1990-01-01\n{citizen_id('11010119900101002')},1990-01-01\n{citizen_id('11010119900101003')},19900101\n"
    bad = run(settings, "datasets", "upload", "PSB-HOUSEHOLD", _write(tmp_path, "bad.csv", bad_rows))
    assert bad.returncode == 1
    assert "row 3, column birth_date: not a valid date" in bad.stderr
    assert not [p for p in settings.resolved_data_dir.rglob("*") if p.is_file()]

    good = _write(tmp_path, "good.csv", bad_rows.replace("19900101", "1990-01-01"))
    wrong = run(settings, "datasets", "upload", "PSB-HOUSEHOLD", good, "--as-department", "CAB")
    assert wrong.returncode == 1 and "belongs to department PSB" in wrong.stderr
    missing = run(settings, "datasets", "show", "NOPE")
    assert missing.returncode == 1 and "NOPE does not exist" in missing.stderr


def test_an_upload_being_checked_does_not_stop_a_running_servers_writes(settings, factory, client, tmp_path):
    # On SQLite a write transaction holds the whole store's write lock: an upload that held one
    # while its file was checked (minutes for a large file) stopped every write of a running
    # server, its ledger's too, until the upload ended or the server's wait for the lock ran out.
    from tests.directory.test_concurrent_uploads import _file
    from tests.factories import DirectoryFactory

    directory = DirectoryFactory(factory)
    directory.dataset("PSB-HOUSEHOLD", "PSB")
    content, ids = _file(2, 600_000)
    source = tmp_path / "large.csv"
    source.write_bytes(content)
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    upload = subprocess.Popen([GOVSHARE, "datasets", "upload", "PSB-HOUSEHOLD", str(source)], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        folder = settings.resolved_data_dir / "datasets" / "PSB-HOUSEHOLD"
        for _ in range(6000):  # until the check has begun: its temporary snapshot exists
            if any(path.name.startswith(".upload-") for path in folder.glob(".*")) or upload.poll() is not None:
                break
            time.sleep(0.01)
        assert upload.poll() is None, "the upload ended before its check could be seen"
        written = client.post("/api/v1/datasets", json=dataset_document("PSB-OTHER"), headers=directory.provider("PSB"))
        assert written.status_code == 201, written.text
        # Still checking: the write did not wait for the upload's version to be stored.
        assert any(path.name.startswith(".upload-") for path in folder.glob(".*")), "the server's write waited for the upload"
        out, err = upload.communicate(timeout=300)
    finally:
        if upload.poll() is None:
            upload.kill()
    assert upload.returncode == 0, err
    assert json.loads(out)["rows"] == len(ids)
