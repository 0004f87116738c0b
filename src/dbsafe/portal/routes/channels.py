"""Alert channels: the webhooks and e-mail addresses every new and resolved alert is sent
to, listed, added, removed and sent a test, as `dbsafe alerts channel` and the API's
/alert-channels. Channels name URLs and mail servers: only a Backup Contributor (``admin``)
sees or changes them, as in the API. The services check a channel (activity.add_channel:
an http(s) URL, an e-mail address with its SMTP options, a password only by the name of a
``DBSAFE_SMTP_*`` variable and over TLS); their refusal shows beside the form."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.refusals import Refusal, refusal
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.web.fields import RowId

router = APIRouter()
CHANNELS = "/settings/alerts"


def _channels_page(request: Request, v: Vault, status_code: int = 200,
                   refused: Refusal | None = None, draft: dict | None = None,
                   delivered: dict | None = None) -> HTMLResponse:
    return page(request, "settings_alerts.html", status_code=status_code,
                channels=activity.list_channels(v.catalog), refused=refused,
                draft=draft or {"kind": "webhook"}, delivered=delivered)


def _port(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 6:
        raise DbsafeError("request.invalid",
                          reason=f"the SMTP port must be a whole number, not {text[:20]!r}")
    return int(text)


def _target(text: str) -> str:
    """Where alerts go, as the API takes it: no spaces or control characters inside."""
    text = text.strip()
    if any(c <= " " or c == "\x7f" for c in text):
        raise DbsafeError("request.invalid",
                          reason="a webhook URL or e-mail address holds no spaces or "
                                 "control characters")
    return text


@router.get(CHANNELS, response_class=HTMLResponse)
def channels_page(request: Request, me: Principal = Depends(caller),
                  v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("admin")
    return _channels_page(request, v)


@router.post(CHANNELS, response_class=HTMLResponse, response_model=None)
def add(request: Request, kind: str = Form("webhook", max_length=16),
        target: str = Form("", max_length=2048), on_success: str = Form("", max_length=8),
        host: str = Form("", max_length=255), port: str = Form("", max_length=20),
        sender: str = Form("", max_length=320), user: str = Form("", max_length=255),
        password_env: str = Form("", max_length=100), starttls: str = Form("", max_length=8),
        tls: str = Form("", max_length=8), ca_file: str = Form("", max_length=4096),
        csrf_token: str = Form(""), me: Principal = Depends(caller),
        v: Vault = Depends(vault)) -> Response:
    """Add a webhook (a URL) or an e-mail address with its SMTP server."""
    me.require("admin")
    check_csrf(me, csrf_token)
    smtp = {"host": host.strip(), "port": port.strip(), "sender": sender.strip(),
            "user": user.strip(), "password_env": password_env.strip(),
            "ca_file": ca_file.strip(), "starttls": starttls == "on", "tls": tls == "on"}
    draft = {"kind": kind, "target": target, "on_success": on_success == "on", **smtp}
    try:
        if kind == "webhook":
            if any(smtp.values()):
                raise DbsafeError("alerts.channel_invalid",
                                  reason="the SMTP settings go with an e-mail address, not "
                                         "a webhook")
            activity.add_channel(v.catalog, kind, _target(target), None, on_success == "on")
        else:
            options = {**{k: smtp[k] or None for k in ("host", "sender", "user",
                                                      "password_env", "ca_file")},
                       "port": _port(port), "starttls": smtp["starttls"], "tls": smtp["tls"]}
            activity.add_channel(v.catalog, kind, _target(target), options,
                                 on_success == "on")
    except DbsafeError as exc:
        return _channels_page(request, v, exc.spec.http_status, refusal(request, "add", exc),
                              draft)
    return RedirectResponse(CHANNELS, status_code=303)


@router.post(CHANNELS + "/{channel_id}/remove", response_class=HTMLResponse,
             response_model=None)
def remove(request: Request, channel_id: RowId, csrf_token: str = Form(""),
           me: Principal = Depends(caller), v: Vault = Depends(vault)) -> Response:
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        activity.remove_channel(v.catalog, channel_id)
    except DbsafeError as exc:
        return _channels_page(request, v, exc.spec.http_status,
                              refusal(request, "list", exc))
    return RedirectResponse(CHANNELS, status_code=303)


@router.post(CHANNELS + "/{channel_id}/test", response_class=HTMLResponse)
def send_test(request: Request, channel_id: RowId, csrf_token: str = Form(""),
         me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Send a test alert now and say whether it arrived (``alerts.delivery_failed`` with
    the receiver's reason when it did not)."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        record = activity.test_channel(v.catalog, channel_id)
    except DbsafeError as exc:
        return _channels_page(request, v, exc.spec.http_status,
                              refusal(request, "list", exc))
    return _channels_page(request, v, delivered=record)

