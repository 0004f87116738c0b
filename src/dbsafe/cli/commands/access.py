"""dbsafe token create|list|revoke · dbsafe user add|list|remove · dbsafe audit

Tokens and users are for the REST API and the portal (`dbsafe serve`); the CLI itself needs
neither (whoever can read the vault's files holds every role). A user's password comes from
DBSAFE_USER_PASSWORD or a prompt, never from an argument (it would show in `ps`)."""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_account, open_vault
from dbsafe.core import bounds
from dbsafe.core.secrets_input import passphrase

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
    from dbsafe.services import operations

    row = operations.create_token(open_vault().catalog, name, role,
                                  operations.cli_principal().name)
    render.emit(row, lambda r: render.out.print(
        f"token {r['id']} ({r['name']}, role {r['role']}):\n{r['token']}\n"
        "keep it now: it cannot be shown again (send it as `Authorization: Bearer TOKEN`)"))


@tokens.command("list")
def token_list() -> None:
    """Tokens (never their secrets), revoked ones too."""
    from dbsafe.services import operations

    render.emit(operations.list_tokens(open_vault().catalog), lambda r: render.table(
        r, ["id", "name", "role", "created", "created_by", "last_used", "revoked"]))


@tokens.command("revoke")
def token_revoke(
        token_id: str = typer.Argument(..., help="The token's id (`token list`).")) -> None:
    """Revoke a token: calls with it, and portal sessions opened with it, are refused from
    now on (by a running `dbsafe serve` within 2 seconds)."""
    from dbsafe.services import operations

    row = operations.revoke_token(open_vault().catalog, token_id)
    render.emit(row, lambda r: render.out.print(f"token {r['id']} revoked at {r['revoked']}"))


@users.command("add")
def user_add(name: str = typer.Argument(..., callback=checked_account),
             role: str = typer.Option(..., "--role", help=ROLE_HELP)) -> None:
    """Add a portal user; the password from DBSAFE_USER_PASSWORD or a prompt."""
    from dbsafe.services import operations

    password = passphrase(f"for portal user {name}", PASSWORD_ENV, confirm=True)
    row = operations.add_user(open_vault().catalog, name, role, password)
    render.emit(row, lambda r: render.out.print(f"user {r['name']} added (role {r['role']})"))


@users.command("list")
def user_list() -> None:
    render.emit(open_vault().catalog.list_users(),
                lambda r: render.table(r, ["name", "role", "created"]))


@users.command("remove")
def user_remove(name: str = typer.Argument(...)) -> None:
    """Remove a portal user and end their sessions."""
    from dbsafe.services import operations

    row = operations.remove_user(open_vault().catalog, name)
    render.emit(row, lambda r: render.out.print(f"user {r['name']} removed"))


def audit(limit: int = typer.Option(50, min=bounds.LIST_LIMIT[0], max=bounds.LIST_LIMIT[1],
                                    help="How many, newest first."),
          actor: str = typer.Option(None, help="Only this caller (token:NAME, "
                                                "user:NAME).")) -> None:
    """The audit log: every change made through the API and the portal."""
    from dbsafe.services import operations

    render.emit(operations.audit_log(open_vault().catalog, limit, None, actor),
                lambda r: render.table(r, ["id", "at", "actor", "role", "source", "action",
                                           "outcome"]))
