"""A form's refusal as the portal shows it beside the form: the registry's code, and its
message in the words of the form.

The registry's messages (core/errors.py) and the services' reasons are written for the
command line too: some name its options (``--port``, ``--off``, ``--smtp-host``) or end
with the command that lists what exists. Beside a form the code stays the registry's, so
the portal, the API and the CLI refuse the same thing with the same code; only the
sentence differs: it names the form's fields, and drops the pointer to a listing the page
itself shows. Codes whose registry message reads well as it is are left alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from dbsafe.core.errors import DbsafeError

# The command line's options, as the forms label them (longest first: one option's text
# may begin another's).
FORM_WORDS = {
    "--smtp-password-env DBSAFE_SMTP_PASSWORD": "“Password variable” DBSAFE_SMTP_PASSWORD",
    "--smtp-password-env": "“Password variable”",
    "--smtp-ca-file": "“CA file”",
    "--smtp-host": "“SMTP server”",
    "--smtp-port": "“SMTP port”",
    "--smtp-user": "“SMTP user”",
    "--smtp-tls": "“Implicit TLS”",
    "--starttls": "“STARTTLS”",
}
CONTRIBUTOR_AT_THE_CLI = ("have a Backup Contributor register the server at the command line "
                          "with the folder of its programs")

# Codes whose registry message speaks of the command line: said from the error's details
# (already in the forms' words) instead.
WORDS: dict[str, Callable[[dict], str]] = {
    # the servers page's "Add a server"
    "server.exists": lambda d: f"a server named {d['name']!r} is already registered: "
                               "choose another name",
    "server.pgdata_missing": lambda d: (
        f"PostgreSQL's programs (pg_ctl) for {d['pgdata']} are not in their usual folder "
        f"on this host: install its packages, or {CONTRIBUTOR_AT_THE_CLI}"
        if "pg_ctl" in str(d.get("reason", "")) else
        f"{d['pgdata']} is not a PostgreSQL data directory ({d['reason']}): give the "
        "folder that holds PG_VERSION and global/"),
    "server.not_running": lambda d: f"PostgreSQL in {d['pgdata']} is not running "
                                    f"({d['reason']}): start it, then add it again",
    "server.wrong_port": lambda d: f"the cluster in {d['pgdata']} listens on port "
                                   f"{d['actual']}, not {d['given']}: give port {d['actual']}",
    "server.connect_failed": lambda d: f"cannot connect to PostgreSQL on port {d['port']}: "
                                       f"{d['reason']}; check the host and the port, and "
                                       f"that pg_hba.conf lets user {d['user']!r} in",
    "server.bin_dir_unsafe": lambda d: f"dbsafe will not run PostgreSQL's programs from "
                                       f"{d['bin_dir']}: {d['path']}: {d['reason']}; only "
                                       "root may be able to change a program dbsafe runs: "
                                       "install PostgreSQL's packages, or "
                                       + CONTRIBUTOR_AT_THE_CLI + " (one only root can change)",
    # the settings pages
    "softdelete.days_out_of_range": lambda d: (
        f"soft-delete retention of {d['days']} days is not allowed; choose {d['low']} to "
        f"{d['high']} days, or turn soft delete off"),
    "alerts.channel_invalid": lambda d: f"cannot add the alert channel: {d['reason']}",
    "alerts.channel_unknown": lambda d: f"no alert channel {d['channel_id']} (it may have "
                                        "been removed)",
    "token.unknown": lambda d: f"no API token {d['token_id']!r} (it may never have existed)",
    "user.unknown": lambda d: f"no user named {d['name']!r} (it may have been removed)",
}


@dataclass(frozen=True)
class Refusal:
    """Which form was refused (a page holds several), the error's code and its words."""

    form: str
    code: str
    message: str


def in_form_words(text: str) -> str:
    for option, label in FORM_WORDS.items():
        text = text.replace(option, label)
    return text


def said(error: DbsafeError) -> str:
    """``error``'s message as a form says it (the registry's own, in the forms' words, for
    other codes and for an error rebuilt from an agent's job row, which has no details)."""
    words = WORDS.get(error.code)
    if words is not None:
        details = {k: in_form_words(v) if isinstance(v, str) else v
                   for k, v in error.details.items()}
        try:
            return words(details)
        except KeyError:
            pass
    return in_form_words(error.message)


def refusal(request: Request, form: str, error: DbsafeError) -> Refusal:
    """``error`` as ``form``'s refusal; the request's outcome in the audit log is its code."""
    request.state.error_code = error.code
    return Refusal(form, error.code, said(error))
