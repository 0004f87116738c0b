"""A settings form's refusal as the portal shows it beside the form (templates/
_refused.html): the registry's code, and its message in the words of the form.

The registry's messages (core/errors.py) and the services' reasons are written for the
command line too: some name its options (``--off``, ``--smtp-host``) or end with the
command that lists what exists. Beside a form the code stays the registry's, so the
portal, the API and the CLI refuse the same thing with the same code; the sentence names
the form's fields instead, and drops the pointer to a listing the page itself shows."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from dbsafe.core.errors import DbsafeError

# The command line's options, as the settings forms label them (longest first: one
# option's text may begin another's).
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

# Codes whose registry message speaks of the command line as a whole: said here without
# it (the error's details fill them, in the forms' words).
TEMPLATES = {
    "softdelete.days_out_of_range":
        "soft-delete retention of {days} days is not allowed; choose {low} to {high} days, "
        "or turn soft delete off",
    "alerts.channel_invalid": "cannot add the alert channel: {reason}",
    "alerts.channel_unknown": "no alert channel {channel_id} (it may have been removed)",
    "token.unknown": "no API token {token_id!r} (it may never have existed)",
    "user.unknown": "no user named {name!r} (it may have been removed)",
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
    """The error's message as a settings form shows it."""
    template = TEMPLATES.get(error.code)
    if template is not None:
        details = {k: in_form_words(v) if isinstance(v, str) else v
                   for k, v in error.details.items()}
        try:
            return template.format(**details)
        except (KeyError, IndexError):
            pass  # rebuilt from a code and a message only (no details)
    return in_form_words(error.message)


def refusal(request: Request, form: str, error: DbsafeError) -> Refusal:
    """``error`` as ``form``'s refusal; the request's outcome in the audit log is its code."""
    request.state.error_code = error.code
    return Refusal(form, error.code, said(error))
