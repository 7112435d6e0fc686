"""Static files: collected into the S3 bucket under content-hashed names, public, cached a year."""

import hashlib
import re
from pathlib import Path

import boto3
from botocore.config import Config
from django.conf import settings

from tests import servers

STYLESHEET = Path(__file__).resolve().parent.parent / "surveys/static/surveys/tally.css"


def _bucket():
    return settings.STORAGES["staticfiles"]["OPTIONS"]["bucket_name"]


def _linked_stylesheet(client):
    page = client.get("/").content.decode()
    match = re.search(r'href="/static/(surveys/tally\.([0-9a-f]{12})\.css)"', page)
    assert match, "the page links no content-hashed stylesheet"
    return match.group(1), match.group(2)


def test_pages_link_the_content_hashed_copy_in_the_bucket(client, s3):
    name, digest = _linked_stylesheet(client)
    with servers.http(s3.public_url(_bucket(), f"static/{name}")) as r:
        body, headers = r.read(), r.headers
    assert hashlib.md5(body, usedforsecurity=False).hexdigest()[:12] == digest
    assert body == STYLESHEET.read_bytes()
    # Anyone may fetch it (the load balancer proxies /static/ to the bucket unsigned), and
    # browsers keep it for a year: a changed file gets a new name.
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Type"].startswith("text/css")


def test_the_bucket_holds_the_manifest_and_no_copy_outside_the_static_prefix(s3):
    bucket = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    keys = [
        item["Key"]
        for listing in bucket.get_paginator("list_objects_v2").paginate(Bucket=_bucket())
        for item in listing.get("Contents", [])
    ]
    assert "static/staticfiles.json" in keys
    assert all(key.startswith("static/") for key in keys)
    assert any(re.fullmatch(r"static/admin/css/base\.[0-9a-f]{12}\.css", key) for key in keys)
