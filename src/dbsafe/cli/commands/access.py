"""dbsafe token create|list|revoke · dbsafe user add|list|remove · dbsafe audit

Tokens and users are for the REST API and the portal (`dbsafe serve`); the CLI itself needs
neither (whoever can read the vault's files holds every role). A user's password comes from
DBSAFE_USER_PASSWORD or a prompt, never from an argument (it would show in `ps`)."""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_account, lazy, open_vault
from dbsafe.core import bounds
from dbsafe.core.secrets_input import passphrase

access = lazy("dbsafe.services.operations")

tokens = typer.Typer(help="API tokens for the REST API and the portal.", no_args_is_help=True)
users = typer.Typer(help="Portal users (name and password).", no_args_is_help=True)
PASSWORD_ENV = "DBSAFE_USER_PASSWORD"
ROLE_HELP = ("reader (Backup Reader: read only), operator (Backup Operator: no deleting "
             "backup data, no stopping protection with delete, no policy changes) or "
             "contributor (Backup Contributor: everything).")


@tokens.command("create")
def token_create(name: str = typer.Argument(..., callback=checked_account,
                                           help="What the token is for."),
                 role: str = typer.Option(..., "--role", help=ROLE_HELP)) -> None:
    """Create a token; it is shown this once (only its hash is kept)."""
    row = access.create_token(open_vault().catalog, name, role,
                              access.cli_principal().name)
    render.emit(row, lambda r: render.out.print(
        f"token {r['id']} ({r['name']}, role {r['role']}):\n{r['token']}\n"
        "keep it now: it cannot be shown again (send it as `Authorization: Bearer TOKEN`)"))


@tokens.command("list")
def token_list() -> None:
    """Tokens (never their secrets), revoked ones too."""
    render.emit(access.list_tokens(open_vault().catalog), lambda r: render.table(
        r, ["id", "name", "role", "created", "created_by", "last_used", "revoked"]))


@tokens.command("revoke")
def token_revoke(
        token_id: str = typer.Argument(..., help="The token's id (`token list`).")) -> None:
    """Revoke a token: calls with it, and portal sessions opened with it, are refused from
    now on (by a running `dbsafe serve` within 2 seconds)."""
    row = access.revoke_token(open_vault().catalog, token_id)
    render.emit(row, lambda r: render.out.print(f"token {r['id']} revoked at {r['revoked']}"))


@users.command("add")
def user_add(name: str = typer.Argument(..., callback=checked_account),
             role: str = typer.Option(..., "--role", help=ROLE_HELP)) -> None:
    """Add a portal user; the password from DBSAFE_USER_PASSWORD or a prompt."""
    password = passphrase(f"for portal user {name}", PASSWORD_ENV, confirm=True)
    row = access.add_user(open_vault().catalog, name, role, password)
    render.emit(row, lambda r: render.out.print(f"user {r['name']} added (role {r['role']})"))


@users.command("list")
def user_list() -> None:
    render.emit(open_vault().catalog.list_users(),
                lambda r: render.table(r, ["name", "role", "created"]))


@users.command("remove")
def user_remove(name: str = typer.Argument(...)) -> None:
    """Remove a portal user and end their sessions."""
    row = access.remove_user(open_vault().catalog, name)
    render.emit(row, lambda r: render.out.print(f"user {r['name']} removed"))


def audit(limit: int = typer.Option(50, min=bounds.LIST_LIMIT[0], max=bounds.LIST_LIMIT[1],
                                    help="How many, newest first."),
          actor: str = typer.Option(None, help="Only this caller (token:NAME, "
                                                "user:NAME).")) -> None:
    """The audit log: every change made through the API and the portal."""
    render.emit(access.audit_log(open_vault().catalog, limit, None, actor),
                lambda r: render.table(r, ["id", "at", "actor", "role", "source", "action",
                                           "outcome"]))
