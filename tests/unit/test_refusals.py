"""The settings forms' refusals in the portal's words (portal/refusals.py): what
the services answer a bad alert channel or soft-delete setting keeps its code, and the
message names the form's fields, never a command-line option or command; the audit log
writes the user form's two password fields as ``***`` (api/gate.py)."""

from __future__ import annotations

import json

import pytest
from starlette.datastructures import State

from dbsafe.api.gate import _audit_detail
from dbsafe.catalog import open_catalog
from dbsafe.core.errors import DbsafeError
from dbsafe.portal.refusals import refusal, said
from dbsafe.services import activity

SMTP = {"host": "smtp.example.com"}
BAD_EMAIL_OPTIONS = [
    {},                                                            # no SMTP server
    {**SMTP, "starttls": True, "tls": True},                       # both kinds of TLS
    {**SMTP, "ca_file": "/etc/ssl/ca.pem"},                        # a CA file without TLS
    {**SMTP, "password_env": "DBSAFE_SMTP_PASSWORD"},              # a variable, no user
    {**SMTP, "user": "alerts", "password_env": "HOME"},            # not a DBSAFE_SMTP_ one
    {**SMTP, "user": "alerts", "password_env": "DBSAFE_SMTP_PASSWORD"},  # no TLS
    {**SMTP, "password": "never-stored"},                          # a password itself
]


@pytest.fixture
def catalog(tmp_path):
    cat = open_catalog("sqlite", tmp_path)
    yield cat
    cat.close()


@pytest.mark.parametrize("options", BAD_EMAIL_OPTIONS)
def test_an_email_channel_is_refused_in_the_forms_words(catalog, options):
    with pytest.raises(DbsafeError) as raised:
        activity.add_channel(catalog, "email", "dba@example.com", options)
    assert raised.value.code == "alerts.channel_invalid"
    assert "--" in raised.value.message                  # the registry's speaks CLI
    words = said(raised.value)
    assert words.startswith("cannot add the alert channel: ")
    assert "--" not in words and "dbsafe alerts" not in words, words


def test_codes_that_name_a_listing_command_or_an_option_are_reworded():
    cases = {DbsafeError("softdelete.days_out_of_range", days=5, low=14, high=180):
             "choose 14 to 180 days, or turn soft delete off",
             DbsafeError("alerts.channel_unknown", channel_id=7): "no alert channel 7",
             DbsafeError("token.unknown", token_id="ab12"): "no API token 'ab12'",
             DbsafeError("user.unknown", name="ursula"): "no user named 'ursula'"}
    for error, expected in cases.items():
        assert expected in said(error) and "dbsafe " not in said(error)
        assert "--off" not in said(error)
    # other codes read well as they are
    region = DbsafeError("vault.region_fixed", region="West Europe")
    assert said(region) == region.message
    # an error rebuilt from a code and a message only (no details) keeps its message
    rebuilt = DbsafeError.reported("token.unknown", "no API token 'x'")
    assert said(rebuilt) == "no API token 'x'"


def test_a_refusal_keeps_the_code_for_the_audit_log():
    class Request:
        state = State()

    request = Request()
    found = refusal(request, "region", DbsafeError("region.unknown", region="Atlantis",
                                                   valid="West Europe"))
    assert (found.form, found.code) == ("region", "region.unknown")
    assert request.state.error_code == "region.unknown"


def test_the_audit_detail_hides_both_password_fields():
    form = (b"name=ursula&role=operator&password=first-secret-pw&password_again=first-secret-pw"
            b"&csrf_token=abc")
    detail = _audit_detail(form, "application/x-www-form-urlencoded")
    assert detail == {"name": "ursula", "role": "operator", "password": "***",
                      "password_again": "***", "csrf_token": "***"}
    body = json.dumps({"name": "ursula", "role": "operator", "password": "first-secret-pw"})
    assert _audit_detail(body.encode(), "application/json")["password"] == "***"
