"""Tokens, users, sessions, roles and the audit log on the real catalog (SQLite, and the
PostgreSQL catalog where the suite provides one)."""

from __future__ import annotations

import hashlib

import pytest

from dbsafe.catalog import open_catalog
from dbsafe.cli.audit_trail import command_of, is_change
from dbsafe.core.errors import DbsafeError
from dbsafe.services.operations import access


@pytest.fixture
def catalog(catalog_spec, tmp_path):
    cat = open_catalog(catalog_spec, tmp_path)
    yield cat
    cat.close()


def test_token_is_shown_once_and_kept_only_as_a_hash(catalog):
    made = access.create_token(catalog, "ci", "operator", "cli:root")
    token = made["token"]
    assert token.startswith("dbs_") and "token" not in access.list_tokens(catalog)[0]
    row = catalog.get_token(made["id"])
    secret = token.split("_", 2)[2]
    assert secret not in str(row) and row["secret_hash"] == hashlib.sha256(
        secret.encode()).hexdigest()
    who = access.token_principal(catalog, token)
    assert (who.name, who.role) == ("token:ci", "operator")
    assert catalog.get_token(made["id"])["last_used"] is not None


@pytest.mark.parametrize("bad", ["", "dbs_", "dbs_nope_x", "Bearer", "dbs_{id}_wrong"])
def test_a_token_that_is_not_valid_is_refused(catalog, bad):
    made = access.create_token(catalog, "ci", "reader", "cli:root")
    with pytest.raises(DbsafeError) as exc:
        access.token_principal(catalog, bad.format(id=made["id"]))
    assert exc.value.code == "auth.invalid"


def test_a_revoked_token_is_refused(catalog):
    made = access.create_token(catalog, "ci", "reader", "cli:root")
    access.revoke_token(catalog, made["id"])
    with pytest.raises(DbsafeError, match="auth.invalid"):
        access.token_principal(catalog, made["token"])
    with pytest.raises(DbsafeError, match="token.unknown"):
        access.revoke_token(catalog, "00000000")


def test_roles_mirror_reader_operator_contributor():
    reader, operator, contributor = (access.Principal("x", r) for r in access.ROLES)
    assert reader.may("read") and not reader.may("operate")
    assert operator.may("operate") and not operator.may("delete")
    assert not operator.may("policy") and not operator.may("admin")
    assert all(contributor.may(p) for p in access.DOING)
    with pytest.raises(DbsafeError) as exc:
        operator.require("delete")
    assert exc.value.code == "auth.forbidden" and exc.value.details["needed"] == "contributor"
    with pytest.raises(DbsafeError, match="auth.role_unknown"):
        access.check_role("admin")


def test_user_login_session_and_logout(catalog):
    with pytest.raises(DbsafeError, match="user.password_weak"):
        access.add_user(catalog, "ana", "operator", "short")
    access.add_user(catalog, "ana", "operator", "correct horse battery")
    with pytest.raises(DbsafeError, match="user.exists"):
        access.add_user(catalog, "ana", "reader", "another long password")
    assert "password_hash" not in catalog.list_users()[0]
    assert catalog.get_user("ana")["password_hash"].startswith("$argon2id$")
    for name, password in (("ana", "wrong password!!"), ("bob", "correct horse battery")):
        with pytest.raises(DbsafeError, match="auth.bad_login"):
            access.login(catalog, name, password)
    session, who = access.login(catalog, "ana", "correct horse battery")
    assert who.csrf and who.role == "operator"
    again = access.session_principal(catalog, session)
    assert (again.name, again.csrf) == ("user:ana", who.csrf)
    assert session not in str(catalog.get_session(hashlib.sha256(session.encode()).hexdigest()))
    access.end_session(catalog, session)
    with pytest.raises(DbsafeError, match="auth.invalid"):
        access.session_principal(catalog, session)


def test_removing_a_user_ends_their_sessions(catalog):
    access.add_user(catalog, "ana", "reader", "correct horse battery")
    session, _ = access.login(catalog, "ana", "correct horse battery")
    access.remove_user(catalog, "ana")
    with pytest.raises(DbsafeError, match="auth.invalid"):
        access.session_principal(catalog, session)


def test_an_expired_session_is_refused(catalog):
    access.add_user(catalog, "ana", "reader", "correct horse battery")
    session, _ = access.login(catalog, "ana", "correct horse battery")
    catalog.update_session(hashlib.sha256(session.encode()).hexdigest(),
                           expires="2000-01-01T00:00:00+00:00")
    with pytest.raises(DbsafeError, match="auth.invalid"):
        access.session_principal(catalog, session)


def test_audit_log_pages_newest_first(catalog):
    who = access.Principal("token:ci", "operator")
    for n in range(5):
        access.audit(catalog, who, "127.0.0.1", f"POST /x/{n}", f"/x/{n}", "ok",
                     {"password": "***", "n": n})
    rows = access.audit_log(catalog, limit=2)
    assert [r["action"] for r in rows] == ["POST /x/4", "POST /x/3"]
    older = access.audit_log(catalog, limit=10, before_id=rows[-1]["id"])
    assert [r["detail"]["n"] for r in older] == [2, 1, 0]


@pytest.mark.parametrize("argv, words, change", [
    (["--vault", "/v", "server", "add", "a", "--pgdata", "/d"], ["server", "add"], True),
    (["backup", "main", "--type", "full"], ["backup"], True),
    (["points", "main", "--json"], ["points"], False),
    (["policy", "list"], ["policy", "list"], False),
    (["token", "create", "ci", "--role", "reader"], ["token", "create"], True),
    (["protect", "--help"], ["protect"], False),
    (["--json"], [], False),
    (["alerts", "--json"], ["alerts"], False),  # a group alone lists (or prints its help)
    (["alerts", "--all"], ["alerts"], False),
    (["alerts", "resolve", "3"], ["alerts", "resolve"], True),
    (["alerts", "channel", "list"], ["alerts", "channel", "list"], False),
    (["alerts", "channel", "add", "--webhook", "u"], ["alerts", "channel", "add"], True),
    (["replicaset", "node", "add", "rs", "p1"], ["replicaset", "node", "add"], True),
    (["replicaset", "node"], ["replicaset", "node"], False),
])
def test_cli_changes_are_told_from_reads(argv, words, change):
    assert command_of(argv) == words
    assert is_change(argv) is change


def test_revoking_a_token_ends_the_sessions_opened_with_it(catalog):
    """A session opened by pasting a token records it: revoking the token ends the session,
    and a session row that outlived the revocation (a login racing it) is refused too."""
    made = access.create_token(catalog, "ci", "operator", "cli:root")
    kept = access.create_token(catalog, "other", "operator", "cli:root")
    session, who = access.token_login(catalog, made["token"])
    other, _ = access.token_login(catalog, kept["token"])
    assert (who.name, who.role) == ("token:ci", "operator") and who.csrf
    assert access.session_principal(catalog, session).name == "token:ci"
    raced = catalog.get_session(hashlib.sha256(session.encode()).hexdigest())
    access.revoke_token(catalog, made["id"])
    with pytest.raises(DbsafeError, match="auth.invalid"):
        access.session_principal(catalog, session)
    assert access.session_principal(catalog, other).name == "token:other"
    catalog.add_session({k: raced[k] for k in raced if k != "token_live"})
    with pytest.raises(DbsafeError, match="auth.invalid"):
        access.session_principal(catalog, session)


def test_a_typed_name_is_kept_bounded_and_printable():
    assert access.shown_name("ana") == "ana"
    shown = access.shown_name("x\x1b[31m\n\u202e" + "y" * 70_000)
    assert len(shown) == access.SHOWN_NAME_MAX and shown.endswith("…")
    assert shown.startswith("x?[31m??y") and shown.isprintable()


def test_a_device_cookie_names_the_user_it_was_given_to(catalog):
    access.add_user(catalog, "ana", "reader", "correct horse battery")
    device = access.remember_device(catalog, "ana")
    assert access.device_user(catalog, device) == "ana"
    assert access.device_user(catalog, "forged") is None
    assert access.device_user(catalog, None) is None
    for _ in range(access.DEVICE_KEEP):
        access.remember_device(catalog, "ana")
    assert access.device_user(catalog, device) is None  # only the newest are kept
    newest = access.remember_device(catalog, "ana")
    access.remove_user(catalog, "ana")
    assert access.device_user(catalog, newest) is None


def test_alerts_are_listed_a_page_at_a_time(catalog):
    from dbsafe.services.activity import alerts

    for n in range(5):
        alerts.raise_alert(catalog, alerts.ARCHIVE_LAG, "warning", f"lag {n}", server=f"s{n}",
                           now=f"2026-01-01T00:00:0{n}+00:00")
    assert [a["server"] for a in alerts.list_alerts(catalog, "active", 2, 1)] == ["s3", "s2"]
    assert len(alerts.list_alerts(catalog, None)) == 5
    assert alerts.list_alerts(catalog, "resolved", 10, 0) == []
