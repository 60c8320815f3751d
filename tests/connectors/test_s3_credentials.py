"""S3 file sources sign with their own stored key pair or not at all, never with the server's credentials (issue 21 item 4).

moto's S3 server (real HTTP, in this process) with its IAM checks switched on: the server's
own key pair, in its environment as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, may read a
private bucket; a source that brings no key pair must not get in with it.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import httpx
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from tests.factories import citizen_id

CODE = "PSB-HOUSEHOLD"
ROWS = [{"citizen_id": citizen_id(f"11010119900307{n:03d}"), "name": f"person {n}", "district": "01", "birth_date": "1990-03-07"}
        for n in range(1, 4)]
EVERYTHING = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


@dataclass
class PrivateStore:
    endpoint: str
    bucket: str
    server_key: dict  # the exchange server's own (ambient) credentials
    department_key: dict  # a department's key pair, which it may store with its binding


@pytest.fixture
def private_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateStore]:
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIASETUP0000000",
                           aws_secret_access_key="setup")
        keys, suffix = {}, secrets.token_hex(4)  # moto's state is process-wide: names of this test's own
        for user in ("exchange-server", "department"):
            iam.create_user(UserName=f"{user}-{suffix}")
            iam.put_user_policy(UserName=f"{user}-{suffix}", PolicyName="everything", PolicyDocument=EVERYTHING)
            keys[user] = iam.create_access_key(UserName=f"{user}-{suffix}")["AccessKey"]
        server_key = keys["exchange-server"]
        filesystem = pafs.S3FileSystem(access_key=server_key["AccessKeyId"], secret_key=server_key["SecretAccessKey"],
                                       endpoint_override=endpoint, region="us-east-1", allow_bucket_creation=True)
        bucket = f"victim-bucket-{suffix}"
        filesystem.create_dir(bucket)
        pq.write_table(pa.Table.from_pylist(ROWS), f"{bucket}/household/part-1.parquet", filesystem=filesystem)
        # From here on every request must be signed by a known key allowed the action (moto's IAM checks).
        assert httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").status_code == 200
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server_key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server_key["SecretAccessKey"])
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield PrivateStore(endpoint, bucket, server_key, keys["department"])
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")  # moto's settings are process-wide
        server.stop()


def _bind(client, directory, config: dict):
    return client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": config}, headers=directory.provider("PSB"))


def test_a_source_without_credentials_cannot_read_with_the_server_s_own(client, directory, private_store):
    directory.dataset()
    # The server's ambient credentials can read the bucket (what the probe's source borrowed).
    ambient = pafs.S3FileSystem(endpoint_override=private_store.endpoint, region="us-east-1")
    assert pq.read_table(f"{private_store.bucket}/household", filesystem=ambient).num_rows == len(ROWS)

    config = {"path": f"s3://{private_store.bucket}/household", "endpoint": private_store.endpoint}
    refused = _bind(client, directory, config)
    assert refused.status_code == 502, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:govshare:problem:source-failed"
    assert private_store.server_key["SecretAccessKey"] not in refused.text
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).status_code == 404


def test_a_source_reads_with_its_own_stored_key_pair(client, directory, private_store):
    directory.dataset()
    key = private_store.department_key
    config = {"path": f"s3://{private_store.bucket}/household", "endpoint": private_store.endpoint,
              "access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}
    bound = _bind(client, directory, config)
    assert bound.status_code == 200, bound.text
    assert bound.json()["has_credential"] is True
    synced = client.post(f"/api/v1/datasets/{CODE}/sync", headers=directory.provider("PSB"))
    assert synced.status_code == 201, synced.text
    assert synced.json()["rows_read"] == len(ROWS)


def test_half_a_key_pair_is_refused(client, directory, private_store):
    directory.dataset()
    config = {"path": f"s3://{private_store.bucket}/household", "endpoint": private_store.endpoint,
              "access_key": private_store.department_key["AccessKeyId"]}
    refused = _bind(client, directory, config)
    assert refused.status_code == 422, refused.text
    assert "secret_key" in refused.json()["detail"]
