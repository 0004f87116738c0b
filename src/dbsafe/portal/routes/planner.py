"""The resource planner (``dbsafe plan``, policy/planner.py) as a form; the answer shows on
the same page. A GET form: planning changes nothing, and the URL can be shared."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.policy import planner
from dbsafe.portal.web import caller, page, vault
from dbsafe.services import inventory
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
# field -> (parser, required); defaults as `dbsafe plan`'s
FIELDS: dict[str, tuple[type, bool]] = {
    "cores": (int, True), "bandwidth_mbps": (float, True), "db_count": (int, True),
    "db_size_gb": (float, True), "change_rate_pct": (float, True),
    "window_hours": (float, False), "instances": (int, False),
    "wal_gb_per_day": (float, False), "disk_mb_s": (float, False)}
DEFAULTS = {"window_hours": "8", "instances": "1", "policy": "default"}


def _inputs(given: dict[str, str]) -> dict:
    """The form's values parsed; ``plan.invalid`` names the first that is not a number."""
    values: dict[str, object] = {}
    for key, (kind, required) in FIELDS.items():
        text = given.get(key, "").strip()
        if not text:
            if required:
                raise DbsafeError("plan.invalid", rule=f"{key} is required")
            continue
        try:
            values[key] = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise DbsafeError("plan.invalid", rule=f"{key} must be {what}, not {text!r}") \
                from None
    return values


@router.get("/planner", response_class=HTMLResponse)
def planner_page(request: Request, me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    given = {k: str(val)[:100] for k, val in request.query_params.items()}
    form = {**DEFAULTS, **given}
    answer, error, status = None, None, 200
    if given:
        try:
            answer = planner.plan(planner.PlanInput(
                policy=inventory.get_policy(v, form["policy"]), **_inputs(form)))
        except DbsafeError as exc:
            error, status = exc.message, exc.spec.http_status
            request.state.error_code = exc.code
    return page(request, "planner.html", status_code=status, form=form, answer=answer,
                error=error, policies=[p["name"] for p in inventory.list_policies(v)],
                max_databases=planner.MAX_DATABASES_PER_SERVER)
