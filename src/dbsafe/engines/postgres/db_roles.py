"""The roles a database names (owners, privileges, policies, per-role settings), and a
staged copy made to name only the roles another server has.

A single-database restore copies the database with its owners and grants (pg_dump and
pg_restore, engines/postgres/logical.py); roles are cluster-wide, matched by name. A role
the target lacks would fail the load, so before the dump the staged copy (a disposable
cluster) is changed with PostgreSQL's own statements: ``REASSIGN OWNED`` gives what such a
role owns to the role the target is loaded as, ``DROP OWNED`` revokes what was granted to
or by it (and removes it from row security policies: a policy for no other role goes, as
do its default privileges), and its settings in the database are reset. What that took
away is read first, from ``pg_shdepend`` (which records every role an object of a
database names, except the bootstrap superuser's pinned ownerships) and
``pg_db_role_setting``, so the restore can say exactly what was not kept.

The bootstrap superuser (the source's ``postgres``) owns objects without a record in
``pg_shdepend`` and cannot be reassigned: when the target has no role of that name, owners
and privileges are not restored at all (``--no-owner --no-privileges``) and that is said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dbsafe.engines.postgres.client import one_row

if TYPE_CHECKING:
    import psycopg

# pg_shdepend.deptype (d: a default privileges entry, s: pg_db_role_setting) -> what the
# role is to the object
KINDS = {"o": "owner", "a": "privileges", "i": "privileges", "r": "policy",
         "d": "default privileges", "s": "settings"}

_REFERENCES = """
    WITH db AS (SELECT oid FROM pg_database WHERE datname = current_database())
    SELECT r.rolname,
           CASE WHEN d.classid = 'pg_default_acl'::regclass THEN 'd' ELSE d.deptype END,
           CASE WHEN d.classid = 'pg_database'::regclass THEN NULL
                ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END
    FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid, db
    WHERE d.refclassid = 'pg_authid'::regclass
      AND (d.dbid = db.oid OR (d.classid = 'pg_database'::regclass AND d.objid = db.oid))
    UNION ALL
    SELECT r.rolname, 's', array_to_string(s.setconfig, ', ')
    FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, db
    WHERE s.setdatabase = db.oid
    ORDER BY 1, 2, 3"""


@dataclass
class Fit:
    """What a staged database had to give up to load into the target: roles the target
    lacks, each thing that named one, who owns instead what they owned (``loader``), and
    whether owners and privileges are restored at all."""
    loader: str
    missing: list[str] = field(default_factory=list)
    not_kept: list[dict] = field(default_factory=list)
    keep_owners: bool = True


def names(conn: psycopg.Connection) -> set[str]:
    """Every role of the server ``conn`` is connected to."""
    return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}


def references(conn: psycopg.Connection, database: str) -> list[dict]:
    """Each (role, what, object) the connected database names: an object's owner, its
    privileges (granted to or by the role), a row security policy's role, the role's
    settings in the database. ``database``: what to call the database itself."""
    found = []
    for role, kind, obj in conn.execute(_REFERENCES):
        if kind == "s":  # obj: the settings
            obj = f"database {database} ({obj})"
        found.append({"role": role, "what": KINDS.get(kind, "privileges"),
                      "object": obj or f"database {database}"})
    return found


def fit_to(conn: psycopg.Connection, present: set[str], default_owner: str,
           database: str) -> Fit:
    """Change the connected (staged, disposable) database so that it names only roles in
    ``present`` (the target's), ``default_owner`` taking over what missing roles owned;
    returns what was given up. ``database``: the name the copy will have, for the report."""
    from psycopg import sql

    conn.execute("SET default_transaction_read_only = off")  # a database may default to it
    conn.execute("SET search_path = ''")  # objects are described with their schema
    found = references(conn, database)
    boss = bootstrap_superuser(conn)
    fit = Fit(default_owner, sorted({r["role"] for r in found} - present))
    fit.not_kept = [r for r in found if r["role"] in fit.missing]
    if boss not in present:
        fit.keep_owners = False
        fit.not_kept.append({"role": boss, "what": "owners and privileges",
                             "object": f"every object of database {database}"})
    if not fit.missing:
        return fit
    ours = [r for r in fit.missing if r != boss]  # the bootstrap superuser stays as it is
    here = one_row(conn.execute("SELECT current_database()"))[0]
    with conn.transaction():
        if ours:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                            (default_owner,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(
                    sql.Identifier(default_owner)))
            listed = sql.SQL(", ").join(map(sql.Identifier, ours))
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                listed, sql.Identifier(default_owner)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(listed))
        for role in fit.missing:
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
                sql.Identifier(role), sql.Identifier(here)))
    return fit


def bootstrap_superuser(conn: psycopg.Connection) -> str:
    """The role that created the cluster (oid 10): what it owns has no ``pg_shdepend``
    record and cannot be reassigned (see the module's docstring)."""
    return one_row(conn.execute("SELECT rolname FROM pg_roles WHERE oid = 10"))[0]


def current_user(conn: psycopg.Connection) -> str:
    """The role ``conn`` is logged in as: what a load without owners gives objects to."""
    return one_row(conn.execute("SELECT current_user"))[0]
