"""Storage locations: the three forms, and refusing a location that carries a secret."""

from __future__ import annotations

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.storage import LocalStorage, open_storage, parse_location


def test_local_forms():
    assert parse_location("/srv/vault").backend == "local"
    assert parse_location("/srv/vault").path == "/srv/vault"
    assert parse_location("relative/vault").path == "relative/vault"
    assert parse_location("file:///srv/vault").path == "/srv/vault"
    assert isinstance(open_storage("file:///srv/vault"), LocalStorage)


def test_s3_form():
    loc = parse_location("s3://my-bucket/team/vault1/?endpoint=http://127.0.0.1:9000"
                         "&region=eu-west-1")
    assert (loc.backend, loc.container, loc.prefix) == ("s3", "my-bucket", "team/vault1")
    assert loc.options == {"endpoint": "http://127.0.0.1:9000", "region": "eu-west-1"}
    assert parse_location(loc.display()) == loc
    bare = parse_location("s3://my-bucket")
    assert bare.prefix == "" and bare.options == {} and bare.display() == "s3://my-bucket"


def test_azure_form():
    loc = parse_location("azure://backups/vault?account=acme"
                         "&endpoint=http://127.0.0.1:10000/acme")
    assert (loc.backend, loc.container, loc.prefix) == ("azure", "backups", "vault")
    assert loc.options["account"] == "acme"
    assert parse_location(loc.display()) == loc


@pytest.mark.parametrize("text, shown", [
    ("s3://AKIAXXXX:hunter2secret@bucket/vault", "hunter2secret"),
    ("s3://bucket/vault?endpoint=http://u:hunter2secret@127.0.0.1:9000", "hunter2secret"),
    ("s3://bucket/vault?secret=hunter2secret", "hunter2secret"),
    ("s3://bucket/vault?aws_secret_access_key=hunter2secret", "hunter2secret"),
    ("s3://bucket/vault?X-Amz-Signature=hunter2secret", "hunter2secret"),
    ("azure://cont/vault?account=a&key=hunter2secret", "hunter2secret"),
    ("azure://cont/vault?account=a&sig=hunter2secret&sv=2024", "hunter2secret"),
    ("azure://cont/vault?account=a&endpoint=http://h/a?sig%3Dhunter2secret", "hunter2secret"),
])
def test_secrets_are_refused_and_not_echoed(text, shown):
    with pytest.raises(DbsafeError) as refused:
        parse_location(text)
    assert refused.value.code == "storage.secret_in_location"
    assert shown not in refused.value.message
    assert "AWS_SECRET_ACCESS_KEY" in refused.value.message  # says what to use instead


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("ftp://host/x", "unknown scheme"),
    ("s3://Bad_Bucket/x", "not a valid bucket"),
    ("azure://ab/x?account=a", "not a valid container"),
    ("s3://bucket/x?color=blue", "unknown parameter"),
    ("s3://bucket/x?endpoint=127.0.0.1:9000", "http://"),
    ("s3://bucket/a//b", "empty folder"),
    ("file://otherhost/x", "file:///"),
])
def test_bad_locations(text, why):
    with pytest.raises(DbsafeError) as refused:
        parse_location(text)
    assert refused.value.code == "storage.bad_location"
    assert why in refused.value.message


def test_azure_without_credentials_says_which_variables():
    with pytest.raises(DbsafeError) as refused:
        open_storage("azure://backups/vault?account=acme&endpoint=http://127.0.0.1:9/acme",
                     env={})
    assert refused.value.code == "storage.credentials_missing"
    assert "AZURE_STORAGE_KEY" in refused.value.message
