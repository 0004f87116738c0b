"""The one registry of dbsafe errors.

Each error has a stable code (scripts and the API match on it), a process exit status, an
HTTP status for the API, and a message that says what failed and what to do. Raise
``DbsafeError(CODE, **details)``; the CLI prints one line, never a traceback.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorSpec:
    code: str
    exit_status: int
    http_status: int
    template: str


_SPECS = [
    # usage / configuration: exit 2
    ErrorSpec("vault.not_initialised", 2, 409,
              "no vault at {path}; create one with `dbsafe vault init` "
              "(or point --vault / DBSAFE_HOME at an existing vault)"),
    ErrorSpec("vault.exists", 2, 409,
              "a vault already exists at {path}; use it, or choose another --vault folder"),
    ErrorSpec("vault.format_unsupported", 2, 409,
              "the vault at {path} has format {found}; this dbsafe reads format {expected}"),
    # vault keys (encryption)
    ErrorSpec("key.missing", 2, 403,
              "this client has no key for the encrypted vault {vault_id}; bring it from a "
              "server that has it: `dbsafe key export FILE` there, then `dbsafe key import "
              "FILE` here (nothing was read or written)"),
    ErrorSpec("key.wrong", 2, 403,
              "that key does not open vault {vault_id} (it belongs to another vault, or the "
              "vault's master key was replaced since: `dbsafe key rotate --master`); import "
              "this vault's key with `dbsafe key import FILE`"),
    ErrorSpec("key.wrong_passphrase", 2, 403,
              "the passphrase does not unlock the key in {path}; check DBSAFE_PASSPHRASE"),
    ErrorSpec("key.passphrase_needed", 2, 403,
              "a passphrase is needed {purpose}: set {env} or run the command at a terminal"),
    ErrorSpec("key.passphrase_mismatch", 2, 400, "the two passphrases differ; try again"),
    ErrorSpec("key.file_missing", 2, 404, "no key file at {path}"),
    ErrorSpec("key.file_invalid", 2, 400,
              "{path} is not a dbsafe key file (a `dbsafe key export` file, or 64 hex digits)"),
    ErrorSpec("key.export_exists", 2, 409,
              "{path} exists; export to a new file (an existing key is never overwritten)"),
    ErrorSpec("key.not_encrypted", 2, 409,
              "this vault is not encrypted: it has no key (create an encrypted vault with "
              "`dbsafe vault init --encryption on`)"),
    ErrorSpec("key.file_without_encryption", 2, 400,
              "--key-file is for encrypted vaults: add --encryption on"),
    ErrorSpec("key.passphrase_weak", 2, 400,
              "that passphrase is too weak ({reason}); use at least {minimum} characters "
              "with some variety (several words, or letters, digits and signs)"),
    ErrorSpec("region.unknown", 2, 400, "unknown region {region!r}; valid regions: {valid}"),
    ErrorSpec("region.ambiguous", 2, 400,
              "{region!r} is the abbreviation of more than one region; give the name: {names}"),
    ErrorSpec("server.unknown", 2, 404,
              "no server named {name!r} in this vault; list them with `dbsafe server list` "
              "or register it with `dbsafe server add`"),
    ErrorSpec("server.exists", 2, 409,
              "a server named {name!r} is already registered; pick another name or "
              "remove it with `dbsafe server remove {name}`"),
    ErrorSpec("server.pgdata_registered", 2, 409,
              "{pgdata} is already registered as server {name!r}; one cluster is one server "
              "(two names for it would back it up twice)"),
    ErrorSpec("server.pgdata_missing", 2, 400,
              "{pgdata} is not a PostgreSQL data directory ({reason}); give the folder that "
              "holds PG_VERSION and global/"),
    ErrorSpec("server.version_unsupported", 2, 400,
              "PostgreSQL {version} is not supported; dbsafe supports major versions {supported}"),
    ErrorSpec("server.not_running", 3, 409,
              "PostgreSQL for {pgdata} is not running ({reason}); start it "
              "(pg_ctl start -D {pgdata}) and try again"),
    ErrorSpec("server.wrong_port", 2, 400,
              "the cluster in {pgdata} listens on port {actual}, not {given}; "
              "use --port {actual}"),
    ErrorSpec("server.connect_failed", 3, 502,
              "cannot connect to PostgreSQL on port {port}: {reason}; check --host/--port, "
              "and that pg_hba.conf lets user {user!r} in (or set PGUSER/PGPASSWORD)"),
    ErrorSpec("server.not_superuser", 3, 403,
              "user {user!r} may not run backups; connect as a superuser or a role "
              "with pg_read_all_settings and EXECUTE on pg_backup_start/pg_backup_stop"),
    ErrorSpec("server.system_changed", 3, 409,
              "the cluster at {pgdata} is not the one registered as {name!r} (system identifier "
              "{found}, expected {expected}); register it under a new name"),
    ErrorSpec("server.wal_level", 3, 409,
              "wal_level is {wal_level}; a backup needs wal_level=replica or logical "
              "(set it in postgresql.conf and restart PostgreSQL)"),
    ErrorSpec("server.bin_dir_unsafe", 2, 409,
              "dbsafe will not run PostgreSQL's programs from {bin_dir}: {path}: {reason}; "
              "only root may be able to change a program dbsafe runs: use the "
              "packaged folder (e.g. /usr/lib/postgresql/<version>/bin), or give a folder "
              "whose every component root owns and only root can write "
              "(`dbsafe server add --bin-dir`)"),
    ErrorSpec("server.no_replication_slot", 3, 409,
              "cannot reserve WAL for the backup: {reason}; a backup holds one temporary "
              "replication slot while it runs: raise max_replication_slots (restart needed) "
              "or free a slot"),
    ErrorSpec("backup.already_running", 4, 409,
              "a {type} backup of {name!r} is already running (job {job_id}); wait for it "
              "or cancel it"),
    ErrorSpec("backup.file_read_failed", 5, 500,
              "could not read {path}: {reason}"),
    ErrorSpec("backup.file_unsafe", 6, 409,
              "the backup stopped: {path} is not what the backup listed: {reason}; "
              "PostgreSQL never does this: find out who changed the data directory (dbsafe "
              "reads only the cluster's regular files as root)"),
    ErrorSpec("backup.tablespace_unsafe", 6, 409,
              "the backup stopped: the tablespace link pg_tblspc/{oid} points to {target}: "
              "{reason}; dbsafe follows a tablespace link only to the location the server "
              "reports, in a folder of the cluster's owner: find out who changed it"),
    ErrorSpec("backup.no_full", 2, 409,
              "no full backup of {name} holds {databases}, and a differential needs one as "
              "its base (a backup taken with --db holds only the databases it names); take "
              "one with `dbsafe backup {name} --type full`"),
    ErrorSpec("backup.diff_became_full", 2, 409,
              "the scheduled differential of {name} ran as a full: no full backup held "
              "{databases} (a backup taken with --db holds only the databases it names)"),
    ErrorSpec("backup.diff_untracked", 2, 409,
              "the differential of {name} scanned the page LSNs of every changed file "
              "instead of reading only the pages the WAL names: {reason}"),
    ErrorSpec("backup.base_unusable", 3, 409,
              "the latest full {base} of {name!r} cannot be the base of a differential: "
              "{reason}; take a new one with `dbsafe backup {name} --type full`"),
    ErrorSpec("point.base_missing", 6, 500,
              "point {point_id} is a differential of full {base}, whose manifest is not in "
              "the vault; it cannot be restored: restore another point "
              "(`dbsafe points {name}`)"),
    ErrorSpec("point.unknown", 2, 404,
              "no recovery point {point_id!r} for {name!r}; list them with `dbsafe points {name}`"),
    ErrorSpec("restore.target_exists", 2, 409,
              "restore target {path} exists; name a folder that does not exist yet: dbsafe "
              "creates it, and never writes into a folder it did not create (a restore "
              "that was interrupted leaves its folder: remove it first)"),
    ErrorSpec("restore.target_outside_roots", 2, 403,
              "restore target {path} is not below a folder restores may write to ({roots}); "
              "restore below one of them, or have an administrator add one with `dbsafe "
              "vault restore-roots add DIR`"),
    ErrorSpec("restore.target_unsafe", 2, 400,
              "{path} cannot be a restore target: {reason}"),
    ErrorSpec("restore.tablespace_target", 2, 409,
              "tablespace {oid} would be restored to {path}: {reason}; map it elsewhere "
              "with --tablespace-map {oid}=DIR"),
    ErrorSpec("restore.write_failed", 5, 500,
              "the restore into {path} failed while writing: {reason}; what it made was "
              "removed (nothing that existed before was written)"),
    ErrorSpec("restore.root_invalid", 2, 400,
              "{path} cannot be a restore root: {reason}"),
    ErrorSpec("restore.owner_unknown", 2, 400,
              "there is no OS user {owner!r} to own the restored files; create it or pass "
              "--owner with an existing user (usually postgres)"),
    ErrorSpec("restore.start_failed", 5, 500,
              "the restored cluster in {pgdata} did not start: {reason}; see {log}"),
    ErrorSpec("instant.no_fuse", 3, 501,
              "instant access needs FUSE on this machine: {reason}; `scripts/install.sh` "
              "installs fuse3 and pyfuse3"),
    ErrorSpec("instant.no_target", 2, 400,
              "say what to open: --time T (an instant of the log chain) or --point ID "
              "(`dbsafe points SERVER` lists them)"),
    ErrorSpec("instant.folder_unusable", 2, 409,
              "{path} cannot take the mount: {reason}; give an empty folder"),
    ErrorSpec("instant.failed", 5, 500,
              "the instant access run did not start: {reason}; its log: {log}"),
    ErrorSpec("instant.recover_tablespaces", 2, 409,
              "point {point_id} of {name} has tablespaces, which instant recovery does not "
              "move yet; restore it with `dbsafe restore --tablespace-map`"),
    ErrorSpec("instant.unknown", 2, 404,
              "no mount or instant instance {run!r} here; `dbsafe instant list` shows them"),
    ErrorSpec("restore.table_name", 2, 400,
              "{table!r} is not a table name dbsafe can restore: give SCHEMA.TABLE (or TABLE, "
              "in public), each part at most 63 bytes, without double quotes"),
    ErrorSpec("restore.table_as_many", 2, 400,
              "--as renames one table, and {count} were given: restore them one at a time"),
    ErrorSpec("restore.table_unknown", 2, 404,
              "there was no table {table} in database {database!r} at {target}; check the "
              "name and the instant (`dbsafe instant` opens the vault there to look)"),
    ErrorSpec("restore.table_exists", 2, 409,
              "{server} already has a table {table} in database {database!r}; restore under "
              "another name with --as NEW_NAME (nothing in the target is replaced)"),
    ErrorSpec("restore.schema_missing", 2, 409,
              "{server} has no schema {schema!r} in database {database!r}; create it there "
              "first (`CREATE SCHEMA {schema}`), then restore the table"),
    ErrorSpec("restore.port_in_use", 2, 409,
              "port {port} is in use; choose a free port with --port"),
    ErrorSpec("server.restart_failed", 5, 500,
              "PostgreSQL in {pgdata} did not restart: {reason}; check its log and start it"),
    ErrorSpec("protect.no_databases", 2, 400,
              "say which databases to protect: --db NAME (once per database), --all, or --auto "
              "(all, and those created later)"),
    ErrorSpec("protect.unknown_database", 2, 404,
              "{name!r} has no database {database!r}; its databases: {valid}"),
    ErrorSpec("protect.archive_owned", 3, 409,
              "the WAL of {name!r} is already archived by {tool} (archive_command = "
              "{command!r}); two backup tools on one server make backups fail: remove it "
              "first (ALTER SYSTEM RESET archive_command; SELECT pg_reload_conf()) or protect "
              "with --recovery-model simple"),
    ErrorSpec("agent.start_failed", 5, 500,
              "the dbsafe agent did not start; see {log}"),
    ErrorSpec("agent.run_dir_unsafe", 2, 409,
              "the agent's run folder {path} cannot be used: {reason}; remove it (dbsafe "
              "makes it again) or set DBSAFE_RUN_DIR to a folder of the user dbsafe runs as"),
    ErrorSpec("agent.already_running", 3, 409,
              "a dbsafe agent (pid {pid}) already serves this vault on {socket}"),
    ErrorSpec("archive.deferred", 3, 409,
              "WAL file {name} of {server!r} is not archived from this node: replica set "
              "{set!r} takes log backups from {taker} now (its backup preference); PostgreSQL "
              "keeps the file and asks again, and it is acknowledged once {taker} archived it"),
    ErrorSpec("archive.file_refused", 3, 409,
              "WAL file {name} of {server!r} was not archived: {reason}; PostgreSQL puts "
              "only regular files named like WAL into pg_wal: find out who put this one "
              "there and remove it (dbsafe reads nothing else as root)"),
    ErrorSpec("archive.conflict", 6, 409,
              "WAL file {name} of {server!r} is already in the vault with other content: "
              "another cluster or a restored copy archives into this chain; stop its archiving "
              "(the vault keeps the first copy)"),
    ErrorSpec("backup.log_simple", 3, 409,
              "{name!r} uses the SIMPLE recovery model: no log backups and no point-in-time "
              "restore; switch with `dbsafe protect {name} --all --recovery-model full`"),
    ErrorSpec("backup.archiving_inactive", 3, 409,
              "WAL archiving of {name!r} is not active ({reason}); {hint}"),
    ErrorSpec("backup.log_timeout", 5, 504,
              "WAL up to {lsn} (segment {segment}) did not reach the vault within {seconds} s "
              "(last archiver failure: {failure}); check `dbsafe agent status` and the "
              "PostgreSQL log"),
    ErrorSpec("backup.read_only_db", 3, 409,
              "database {database!r} is read-only: only full and copy-only backups are possible "
              "for it; leave it out with --db, or take a full"),
    ErrorSpec("chain.broken", 6, 409,
              "the log chain of {name!r} is broken: {gaps}; point-in-time restore is not "
              "possible inside a gap; take a full backup to start a whole chain again"),
    ErrorSpec("restore.simple_model", 3, 409,
              "{name!r} uses the SIMPLE recovery model: no point-in-time restore; restore a "
              "point with --point (list them with `dbsafe points {name}`)"),
    ErrorSpec("restore.outside_chain", 2, 409,
              "{target} is outside the log chain of {name!r}; restorable ranges: {ranges}"),
    ErrorSpec("restore.bad_target", 2, 400,
              "cannot read the restore target {target!r}: {reason}"),
    # instants (services/restore/instants.py): one rule for the CLI, the API and the portal
    ErrorSpec("time.zone_missing", 2, 400,
              "the instant {text!r} has no time zone, and dbsafe does not guess one (a "
              "point-in-time restore to the wrong hour restores the wrong data); give it "
              "with its zone: {local} ({zone}, the zone of the dbsafe host) or {utc}"),
    ErrorSpec("time.bad_instant", 2, 400,
              "cannot read the instant {text!r}: give ISO 8601 with its zone, such as "
              "{example}"),
    ErrorSpec("time.zone_unknown", 2, 400,
              "{zone!r} is not a time zone dbsafe knows; choose one of the list (IANA "
              "names such as Europe/Berlin), or UTC"),
    ErrorSpec("restore.database_not_in_point", 2, 404,
              "point {point_id} does not hold database {database!r}; it holds: {held}"),
    ErrorSpec("restore.target_version_older", 2, 409,
              "{target!r} runs PostgreSQL {version}, older than the backup's {source_version}; "
              "restore into a server of version {source_version} or newer"),
    ErrorSpec("restore.database_exists", 2, 409,
              "{target!r} already has a database {name!r}; choose another --as name, or pass "
              "--overwrite to replace it (it is dropped only after the copy succeeded)"),
    ErrorSpec("restore.no_space", 3, 507,
              "not enough disk space on {where}: the restore needs about {need} bytes, "
              "{free} are free; free space or restore elsewhere (what the restore made "
              "was removed)"),
    ErrorSpec("restore.copy_failed", 5, 500,
              "copying the restored database into the target failed at {step}: {reason}; "
              "the target is unchanged"),
    ErrorSpec("restore.no_base", 2, 409,
              "no full backup of {name!r} precedes {target} on its log chain; restorable "
              "ranges: {ranges}"),
    ErrorSpec("restore.database_not_in_chain", 2, 409,
              "no backup of {name!r} that holds database {database!r} precedes {target} on "
              "its log chain (a backup taken with --db holds only the databases it names); "
              "{database!r} is restorable in: {ranges}"),
    ErrorSpec("restore.recovery_failed", 5, 500,
              "recovery of {pgdata} did not reach {target}: {reason}; see {log}"),
    ErrorSpec("vault.block_missing", 6, 500,
              "block {block_id} of {path} is not in the vault; the point is damaged; "
              "run `dbsafe verify` and take a new full backup"),
    ErrorSpec("vault.block_corrupt", 6, 500,
              "block {block_id} of {path} is corrupt in the vault ({reason}); the point is "
              "damaged; run `dbsafe verify` and take a new full backup"),
    ErrorSpec("vault.object_corrupt", 6, 500,
              "{path} in the vault is corrupt ({reason}); run `dbsafe verify`"),
    ErrorSpec("vault.manifest_invalid", 6, 500,
              "point {point_id} is refused before anything is written: its manifest's "
              "{entry} {rule}; dbsafe did not write it, so the vault's storage may have been "
              "tampered with: restore another point and check who can write the storage"),
    # a full vault file system (services/handle/space.py; storage/local.py turns ENOSPC into it)
    ErrorSpec("vault.full", 3, 507,
              "the vault's storage at {path} is full: {what} needs about {need} more bytes "
              "and {free} are free; nothing of it was kept and the vault's earlier points "
              "are intact: free space there (delete points with `dbsafe delete-point`, then "
              "`dbsafe gc`) or move the vault, then run it again"),
    # a repository that is not what this client knows of it (hostile storage)
    ErrorSpec("vault.tampered", 6, 409,
              "the vault at {path} is not the vault this client knows: {what}; dbsafe uses "
              "nothing of it (nothing was read or written). {action}"),
    ErrorSpec("vault.index_missing", 6, 409,
              "the vault at {path} has packs in data/ but no index file in index/ (moved "
              "or deleted); nothing was read or written: put index/ back (or rebuild it "
              "from the packs' headers) before backing up or restoring"),
    ErrorSpec("vault.lock_lost", 5, 409,
              "this writer's lock {lock} lapsed ({reason}): other clients may have deleted "
              "packs it reuses, so it did not commit; run the backup again"),
    ErrorSpec("verify.failed", 6, 500,
              "point {point_id} has {problems} damaged block(s) in {files} file(s)"),
    ErrorSpec("verify.live_differs", 6, 500,
              "point {point_id} of {name}: {pages} page(s) the server has not changed since "
              "the point started differ from the point's copy (see --json for which); do "
              "not rely on it: take a full that reads every file (dbsafe backup {name} "
              "--type full) and report this"),
    ErrorSpec("job.unknown", 2, 404, "no job {job_id!r}"),
    # jobs, protection with policies, the scheduler
    ErrorSpec("job.cancelled", 8, 409, "job {job_id} was cancelled; nothing it wrote is "
              "visible (a backup's point is not recorded); run it again when needed"),
    ErrorSpec("job.not_running", 2, 409, "job {job_id} is {state}, not running; only a "
              "running job can be cancelled"),
    ErrorSpec("job.bad_state", 2, 400, "unknown job state {state!r}; valid states: {valid}"),
    # a job's end recorded without an exception of its own (its row's error_code)
    ErrorSpec("job.abandoned", 5, 500,
              "the process that ran it (pid {pid}) ended without finishing; nothing it wrote "
              "is visible; run it again when needed"),
    ErrorSpec("job.interrupted", 130, 409,
              "interrupted by the user; nothing it wrote is visible; run it again when needed"),
    ErrorSpec("job.agent_lost", 5, 500,
              "the agent of host {host} stopped reporting on this job at {last} (nothing for "
              "{seconds} s): it ended there unfinished; nothing it wrote is visible (gc "
              "reclaims it). See `dbsafe agent show {agent_id}`; run the job again when the "
              "agent is back"),
    ErrorSpec("restore.check_unanswered", 5, 503,
              "the agent of host {host} did not answer the restore checks ({reason}); they "
              "run on that host, where the restore would. See `dbsafe agent show "
              "{agent_id}`; check again once it is back, or choose another host"),
    ErrorSpec("job.no_longer_running", 5, 409,
              "job {job_id} is {state} at the control plane: it was ended while it waited "
              "here (its agent lost contact, or it was cancelled); nothing it wrote is visible"),
    # a fleet: the control plane and its agents (docs/fleet.md)
    ErrorSpec("agent.token_invalid", 2, 401,
              "that registration token is unknown, used or expired; ask for a new one "
              "(`dbsafe agent token create` on the control plane, or its portal's servers page)"),
    ErrorSpec("agent.token_host", 2, 403,
              "that registration token is for host {expected!r}, not {host!r}; ask for a "
              "token for this host"),
    ErrorSpec("agent.credential_invalid", 2, 401,
              "the control plane does not know this agent's credential; register it again "
              "with a new token (`dbsafe agent token create` on the control plane, then "
              "`dbsafe agent register URL --token T --force` here)"),
    ErrorSpec("agent.revoked", 2, 401,
              "agent {agent_id} (host {host}) was revoked at {revoked}; register it again "
              "with a new token if it should serve again"),
    ErrorSpec("agent.out_of_scope", 2, 403,
              "agent {agent_id} (host {host}) may not {action}: {what} is not one of its "
              "host's servers (refused and written to the audit log)"),
    ErrorSpec("agent.invalid", 2, 400, "{reason}"),
    ErrorSpec("agent.catalog_remote", 2, 409,
              "{path} is an agent's folder: its catalog is the control plane's. Run this "
              "command on the control plane (its CLI, API or portal)"),
    ErrorSpec("agent.job_unknown", 2, 400,
              "the control plane sent a job of type {type!r}, which this agent does not "
              "run (an older agent than the control plane? upgrade it)"),
    ErrorSpec("agent.unknown", 2, 404, "no agent {agent_id!r}; `dbsafe agent list` shows them"),
    ErrorSpec("agent.not_registered", 2, 409,
              "this host's agent is not registered with a control plane; run `dbsafe agent "
              "register URL --token T` with a token from `dbsafe agent token create` there"),
    ErrorSpec("agent.already_registered", 2, 409,
              "this host's agent is registered already (agent {agent_id} with {url}); add "
              "--force to replace that registration"),
    ErrorSpec("agent.fingerprint_mismatch", 6, 409,
              "the control plane at {url} shows a certificate with fingerprint {found}, not "
              "the {expected} you gave: nothing was sent. Check the address, or copy the "
              "command again from the control plane"),
    ErrorSpec("agent.trust_needed", 2, 400,
              "the control plane at {url} has a certificate this host cannot check ({reason}); "
              "give --fingerprint (printed with the registration token) or --ca-file"),
    ErrorSpec("agent.control_unreachable", 5, 503,
              "the control plane at {url} cannot be reached: {reason}; the agent retries"),
    ErrorSpec("agent.outbox_full", 5, 507,
              "{lines} reports wait in {path} for the control plane, the most this agent "
              "keeps: WAL is no longer acknowledged (PostgreSQL keeps it); bring the control "
              "plane back or check the agent's connection to it"),
    ErrorSpec("agent.control_refused", 5, 502,
              "the control plane at {url} answered {status}: {message}"),
    ErrorSpec("protect.policy_mismatch", 2, 409,
              "the protected databases of {name} use policy {current!r}; all databases of an "
              "instance share one policy (PostgreSQL's WAL and base backups are per instance). "
              "Move them all with `dbsafe protect {name} --all --policy {wanted}`"),
    ErrorSpec("protect.model_conflicts_policy", 2, 400,
              "policy {policy!r} implies the {implied} recovery model (log backups "
              "{logs}); drop --recovery-model or choose a policy that matches {model}"),
    ErrorSpec("protect.not_protected", 2, 404,
              "{database!r} of {name} is not a protected item; list them with "
              "`dbsafe items {name}`"),
    ErrorSpec("protect.not_protectable", 2, 400,
              "{database!r} of {name} cannot be protected: {reason}"),
    ErrorSpec("protect.other_vault", 2, 409,
              "{name} already archives its WAL into another dbsafe vault ({command}); protect "
              "a server in one vault only: stop protection there first"),
    ErrorSpec("replicaset.unknown", 2, 404,
              "no replica set named {name!r}; list them with `dbsafe replicaset list` or "
              "create it with `dbsafe replicaset add {name} --preference primary`"),
    ErrorSpec("replicaset.name_taken", 2, 409,
              "a replica set or server named {name!r} already exists; pick another name"),
    ErrorSpec("replicaset.bad_preference", 2, 400,
              "backup preference {preference!r} is not one of {valid}"),
    ErrorSpec("replicaset.vault_region_missing", 2, 409,
              "this vault has no region, and replica sets need one (backups run only on "
              "nodes in the vault's region); set it once with `dbsafe vault region REGION`"),
    ErrorSpec("replicaset.no_nodes", 2, 409,
              "replica set {name!r} has no nodes yet; add them with "
              "`dbsafe replicaset node add {name} SERVER --region REGION`"),
    ErrorSpec("replicaset.node_elsewhere", 2, 409,
              "server {server!r} is already a node of replica set {other!r}; a server belongs "
              "to one replica set (remove it there first)"),
    ErrorSpec("replicaset.not_a_node", 2, 404,
              "server {server!r} is not a node of replica set {name!r}; its nodes: {nodes}"),
    ErrorSpec("replicaset.other_cluster", 2, 409,
              "server {server!r} (system identifier {found}) is not a copy of replica set "
              "{name!r}'s cluster ({expected}): a set's nodes are a primary and its streaming "
              "standbys (made with pg_basebackup)"),
    ErrorSpec("replicaset.node_has_items", 2, 409,
              "server {server!r} has databases protected on their own ({items}); a node of a "
              "replica set is protected through the set: stop that protection first "
              "(`dbsafe unprotect {server} --retain-data`), then add the node"),
    ErrorSpec("replicaset.node_alone", 2, 409,
              "server {name!r} is a node of replica set {set!r}: protecting or backing up one "
              "node on its own makes the set's backups fail; use the set instead "
              "(`dbsafe {action} {set} ...`)"),
    ErrorSpec("replicaset.has_data", 2, 409,
              "replica set {name!r} still holds {what}; stop protection with "
              "`dbsafe unprotect {name} --delete-data` first (or keep the set: its "
              "points restore only through it)"),
    ErrorSpec("replicaset.no_node", 3, 409,
              "no node of replica set {name!r} may take a {type} backup now: {reason}"),
    ErrorSpec("replicaset.archiving_inactive", 3, 409,
              "node {server} of replica set {name!r} does not archive WAL into this vault "
              "({reason}); run `dbsafe protect {name} --all --restart` to set it up"),
    ErrorSpec("server.protected", 2, 409,
              "server {name!r} has protected databases ({items}): dbsafe archives its WAL, and "
              "removing the server would leave PostgreSQL handing WAL to an agent that no "
              "longer takes it (pg_wal grows until production stops); nothing was removed; "
              "stop protection first (`dbsafe unprotect {name} --retain-data`, or "
              "--delete-data), then remove it"),
    ErrorSpec("server.archiving_ours", 2, 409,
              "server {name!r} still archives its WAL through dbsafe (archive_command = "
              "{command}); nothing was removed; turn that off first (`dbsafe unprotect "
              "{name} --retain-data`, or reset archive_command in PostgreSQL), then remove "
              "it"),
    ErrorSpec("replicaset.remove_with_command", 2, 409,
              "{name!r} is a replica set, not a server; remove it with "
              "`dbsafe replicaset remove {name}`"),
    ErrorSpec("restore.target_standby", 2, 409,
              "{target!r} is a standby (read-only, in recovery): restore the database into "
              "its primary, or into its replica set (`--target-server SET`), and let "
              "replication bring it to the standby"),
    ErrorSpec("vault.region_fixed", 2, 409,
              "this vault's region is already {region}; a vault's region cannot change "
              "(create a vault in the other region instead)"),
    ErrorSpec("protect.standby_alone", 2, 409,
              "{name!r} is a standby (in recovery); protecting a standby on its own, beside "
              "its primary, makes backups fail: protect them together as a replica set "
              "(`dbsafe replicaset add SET`, `dbsafe replicaset node add SET {name}` and its "
              "primary, then `dbsafe protect SET`)"),
    ErrorSpec("unprotect.choose_data", 2, 400,
              "say what happens to the backups of {name}: --retain-data keeps every point "
              "until you delete it, --delete-data removes the points only these databases use"),
    ErrorSpec("serve.already_running", 3, 409,
              "a dbsafe serve (pid {pid}) already runs the scheduler of this vault; stop it "
              "first or use that one (`--no-scheduler` serves the API and portal only)"),
    ErrorSpec("serve.scheduler_elsewhere", 3, 409,
              "another dbsafe serve, on another host or from another client folder, runs the "
              "scheduler of this vault's catalog {catalog}: one scheduler per catalog; stop "
              "it first, or serve the API and portal only here with `--no-scheduler`"),

    # policies and the resource planner ------------------------------------------------
    ErrorSpec("policy.invalid", 2, 400,
              "policy {policy!r} is not valid: {rule}; nothing was saved"),
    ErrorSpec("policy.unknown", 2, 404,
              "no policy named {name!r}; policies: {valid}; create one with "
              "`dbsafe policy create`"),
    ErrorSpec("policy.exists", 2, 409,
              "a policy named {name!r} already exists; change it with "
              "`dbsafe policy edit {name}`, or pick another name"),
    ErrorSpec("policy.in_use", 2, 409,
              "policy {name!r} is in use by {count} item(s): {items}; move them to another "
              "policy (`dbsafe protect ... --policy P`), stop their protection or turn "
              "auto-protection off first"),
    ErrorSpec("policy.default_required", 2, 409,
              "the default policy cannot be deleted (it is what protection uses when no "
              "policy is named); change it with `dbsafe policy edit default`"),
    ErrorSpec("plan.invalid", 2, 400, "cannot plan: {rule}"),
    # alerts and alert channels ------------------------------------------------------
    ErrorSpec("alerts.unknown", 2, 404,
              "no alert {alert_id}; list them with `dbsafe alerts --all`"),
    ErrorSpec("alerts.channel_unknown", 2, 404,
              "no alert channel {channel_id}; list them with `dbsafe alerts channel list`"),
    ErrorSpec("alerts.channel_invalid", 2, 400,
              "cannot add the alert channel: {reason}; see `dbsafe alerts channel add --help`"),
    ErrorSpec("alerts.delivery_failed", 5, 502,
              "the test alert did not reach channel {channel_id} ({target}): {reason}; check "
              "the address, that the receiver is up, and the channel's options"),
    # discovery, auto-protection and the support matrix's limits
    # (services/protection/discovery.py, services/inventory/limits.py, docs/discovery-and-limits.md)
    ErrorSpec("discover.no_target", 2, 400,
              "say what to discover: a registered server (`dbsafe discover NAME`) or the "
              "PostgreSQL instances of this host (`dbsafe discover --instances`)"),
    ErrorSpec("limit.items_per_server", 3, 409,
              "{name!r} has {count} protected database(s) and this adds {adding}: a server "
              "protects at most {limit}; stop protecting databases you no longer need "
              "(`dbsafe unprotect {name} --db DB`) first"),
    ErrorSpec("limit.items_per_vault", 3, 409,
              "this vault protects {count} database(s) and this adds {adding}: a vault "
              "protects at most {limit}; stop protecting databases you no longer need, or "
              "protect this server in another vault (--vault)"),
    ErrorSpec("limit.per_request", 2, 400,
              "{count} databases in one request: at most {limit} per request; protect them in "
              "batches of {limit} (--db), or turn on auto-protection for all of them "
              "(`dbsafe protect {name} --auto --policy POLICY`)"),
    ErrorSpec("limit.large_database", 3, 413,
              "database {database!r} is {size}, above the {limit} dbsafe is sized for: it is "
              "protected, but every full backup reads all of it and takes long; prefer weekly "
              "fulls with daily differentials and check the window with `dbsafe plan`"),
    ErrorSpec("limit.auto_protect_skipped", 3, 409,
              "{count} database(s) of {name!r} were not auto-protected ({names}): {reason}; "
              "stop protecting databases you no longer need, then run `dbsafe discover {name}`"),
    ErrorSpec("server.os_untested", 3, 409,
              "this host runs {found}; dbsafe's test suite runs on {tested}: the server is "
              "registered, but nothing has checked dbsafe on this system (its PostgreSQL "
              "packages' layout, the tools dbsafe runs: runuser, findmnt, pg_lsclusters); "
              "try a backup and a restore before relying on it"),
    ErrorSpec("server.deployment_unsupported", 2, 400,
              "the instance in {pgdata} cannot be registered: {what}; dbsafe supports "
              "PostgreSQL whose data directory is on a local file system of the host dbsafe "
              "runs on (docs/discovery-and-limits.md, Registration)"),
    # restore drills (services/restore/drills.py) ---------------------------------------------
    ErrorSpec("drill.no_point", 2, 409,
              "{name!r} has no backup a drill could restore; take a full backup first "
              "(`dbsafe backup {name} --type full`)"),
    ErrorSpec("drill.already_running", 4, 409,
              "a restore drill of {name!r} is already running (job {job_id}); wait for it"),
    ErrorSpec("drill.scratch_unsafe", 2, 409,
              "{path} cannot hold scratch clusters: {reason}; remove it or pass another "
              "scratch folder"),
    ErrorSpec("drill.check_failed", 6, 500,
              "restore drill {drill_id} of {name!r} failed the {check} check: {reason}; "
              "what the vault holds may not restore: run `dbsafe verify {name}`, take a "
              "new full backup, and see `dbsafe drills --server {name}`"),
    # ---------------------------------------------------------------------------------
    # deleting points and garbage collection (services/lifecycle/prune.py, vault/gc.py)
    ErrorSpec("prune.point_unknown", 2, 404,
              "no recovery point {point_id!r} in this vault; list them with "
              "`dbsafe points NAME`"),
    ErrorSpec("prune.base_in_use", 2, 409,
              "full {point_id} is the base of differential(s) {diffs}, which would stay and "
              "could not be restored; delete them in the same request, or keep the full"),
    ErrorSpec("prune.point_in_use", 4, 409,
              "point {point_id} is the latest full of {name!r} that holds the databases a "
              "running backup of {name!r} holds (job {job_id}): a differential may be based "
              "on it; wait for the backup to end"),
    ErrorSpec("gc.running", 4, 409,
              "garbage collection already runs on the vault at {path}; wait for it to end"),
    # ---------------------------------------------------------------------------------
    # the catalog's backends: SQLite or a shared PostgreSQL (catalog/)
    ErrorSpec("catalog.spec_invalid", 2, 400,
              "the catalog setting is not usable: {reason}; give 'sqlite' or a PostgreSQL "
              "connection string (postgresql://USER@HOST:PORT/DBNAME or "
              "'host=HOST port=PORT dbname=DBNAME user=USER')"),
    ErrorSpec("catalog.password_in_dsn", 2, 400,
              "the catalog connection string for {location} holds a password, and dbsafe "
              "never stores passwords: remove it and give the password in PGPASSWORD, "
              "~/.pgpass or the file PGPASSFILE names"),
    ErrorSpec("catalog.connect_failed", 3, 502,
              "cannot open the catalog database {location}: {reason}; check that the server "
              "runs and accepts connections there, that the database exists, that the user "
              "may create a schema in it, and that the password is in PGPASSWORD, ~/.pgpass "
              "or PGPASSFILE"),
    ErrorSpec("catalog.busy", 4, 409,
              "{name!r} is held on the catalog at {location} by another process; wait for "
              "it to end"),
    # soft delete and immutable vaults (services/lifecycle/deletion.py, immutability.py)
    ErrorSpec("point.soft_deleted", 2, 409,
              "point {point_id} is soft-deleted (purged after {purge_after}); bring it back "
              "with `dbsafe undelete {point_id}`, then restore it"),
    ErrorSpec("softdelete.already_deleted", 2, 409,
              "point {point_id} is already soft-deleted; see `dbsafe points NAME --deleted` "
              "for when it is purged, or `dbsafe undelete {point_id}`"),
    ErrorSpec("softdelete.not_deleted", 2, 409,
              "point {point_id} is not soft-deleted: there is nothing to undelete"),
    ErrorSpec("softdelete.days_out_of_range", 2, 400,
              "soft-delete retention of {days} days is not allowed; choose {low} to {high} "
              "days, or --off"),
    ErrorSpec("immutability.state_unknown", 2, 400,
              "unknown immutability {state!r}; choose one of: {valid}"),
    ErrorSpec("immutability.locked", 2, 409,
              "the vault's immutability is locked and cannot be turned {state}; a locked "
              "vault stays immutable"),
    ErrorSpec("immutability.retained", 2, 409,
              "the vault is immutable: point {point_id} is retained until {until} "
              "({count} point(s) of the request are retained); nothing was deleted; delete "
              "it after its retention ends"),
    ErrorSpec("immutability.soft_delete_locked", 2, 409,
              "the vault is immutable: soft delete cannot be shortened or turned off "
              "(now {current}, asked {asked}); turn immutability off first (not possible "
              "once locked)"),
    ErrorSpec("immutability.retention_shortened", 2, 409,
              "the vault is immutable: {what} would shorten retention ({changes}); nothing "
              "was changed; lengthening is fine, shortening needs immutability off (not "
              "possible once locked)"),
    ErrorSpec("immutability.server_retained", 2, 409,
              "the vault is immutable: server {name!r} holds {count} recovery point(s) whose "
              "retention has not ended (the last until {until}); nothing was removed; "
              "remove it after their retention ends and they are deleted"),
    # storage locations and object storage backends (src/dbsafe/storage/,
    # docs/storage.md) -----------------------------------------------------------------
    ErrorSpec("storage.bad_location", 2, 400,
              "cannot use the storage location {location!r}: {reason}; see docs/storage.md "
              "for the forms (a path, s3://BUCKET/PREFIX?endpoint=..., "
              "azure://CONTAINER/PREFIX?account=...)"),
    ErrorSpec("storage.secret_in_location", 2, 400,
              "the storage location {location!r} carries a secret ({what}); a location is "
              "stored and shown, so it must not: remove it and set the credentials in the "
              "environment instead (S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; Azure: "
              "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY)"),
    ErrorSpec("storage.container_missing", 2, 404,
              "{location} does not exist ({what} {container!r} is missing); check the name, "
              "or create the vault there with `dbsafe vault init`, which creates it"),
    ErrorSpec("storage.credentials_missing", 3, 401,
              "no credentials for {location}; set {variables} in the environment"),
    ErrorSpec("storage.access_denied", 3, 403,
              "{location} refused access ({reason}); check the credentials in {variables} "
              "and that they may read, write, list and delete there"),
    ErrorSpec("storage.unreachable", 3, 502,
              "cannot reach {location} ({reason}); check the endpoint, the network and that "
              "the service runs"),
    ErrorSpec("storage.request_failed", 5, 502,
              "{operation} of {name!r} in {location} failed after retries: {reason}; "
              "run the command again when the store answers"),
    # REST API, portal and access --------------------------------------------------------
    ErrorSpec("auth.required", 2, 401,
              "this call needs a token: send `Authorization: Bearer TOKEN` (create one with "
              "`dbsafe token create NAME --role reader|operator|contributor`) or log in"),
    ErrorSpec("auth.invalid", 2, 401,
              "that token or session is not valid (unknown, revoked or expired); log in again "
              "or create a new token with `dbsafe token create`"),
    ErrorSpec("auth.bad_login", 2, 401, "wrong user name or password"),
    ErrorSpec("auth.forbidden", 2, 403,
              "role {role!r} may not {action}; ask a Backup Contributor for a token with "
              "role {needed!r}"),
    ErrorSpec("auth.csrf", 2, 403,
              "the form's CSRF token is missing or stale; reload the page and submit again"),
    ErrorSpec("auth.throttled", 2, 429,
              "too many failed logins {scope}; wait {retry_after} seconds and try again (a "
              "browser that logged in as that user before is not held back by others' "
              "failures)"),
    ErrorSpec("auth.busy", 2, 503,
              "too many logins are being checked at once; try again in {retry_after} "
              "seconds"),
    ErrorSpec("auth.role_unknown", 2, 400,
              "unknown role {role!r}; roles: reader, operator, contributor"),
    ErrorSpec("token.unknown", 2, 404, "no API token {token_id!r}; list them with "
              "`dbsafe token list`"),
    ErrorSpec("user.exists", 2, 409, "a user named {name!r} exists; pick another name"),
    ErrorSpec("user.unknown", 2, 404, "no user named {name!r}; list them with `dbsafe user list`"),
    ErrorSpec("user.password_weak", 2, 400,
              "the password is too short ({length} characters); use at least {minimum}"),
    ErrorSpec("request.invalid", 2, 422, "the request is not valid: {reason}"),
    ErrorSpec("request.too_large", 2, 413,
              "the request body has more than {limit} bytes; requests are small JSON documents"),
    ErrorSpec("request.not_found", 2, 404, "no such endpoint: {method} {path}; see /openapi.json"),
    ErrorSpec("request.method_not_allowed", 2, 405,
              "{method} is not allowed on {path}; see /openapi.json"),
    ErrorSpec("request.bad_host", 2, 400,
              "this dbsafe serve does not answer to the host name {host!r} (a page of "
              "another site may be trying to reach it); open it by one of its names, or "
              "start it with `--allowed-host NAME`"),
    ErrorSpec("request.too_many_streams", 2, 429,
              "too many job event streams are open ({scope}); close a job's page or "
              "stream and try again in {retry_after} seconds"),
    ErrorSpec("serve.tls_needed", 2, 400,
              "serving on {host} (not loopback) needs TLS: give --tls-cert and --tls-key, or "
              "--behind-tls-proxy if a proxy in front of dbsafe does TLS (--insecure: plain "
              "HTTP, no TLS anywhere)"),
    ErrorSpec("serve.forwarded_ips", 2, 400,
              "--forwarded-allow-ips takes the addresses of your proxies (IP addresses or "
              "networks, comma-separated), not {value!r}"),
    ErrorSpec("serve.tls_files", 2, 400,
              "give both --tls-cert and --tls-key (PEM files)"),
    # the command line's own usage errors (cli/app.py): an unknown option, a missing or
    # out-of-range value; the message is Click's
    ErrorSpec("usage.invalid", 2, 400, "{reason}; see `{command} --help`"),
    # an operating system error no service turned into its own (core/errors.py, os_error)
    ErrorSpec("system.no_space", 3, 507,
              "no space left on the file system of {path} ({reason}); free space there and "
              "run it again"),
    ErrorSpec("system.io_failed", 5, 500,
              "the operating system refused {path}: {reason}; check that the path exists "
              "and is what dbsafe expects there (a folder, a file), its permissions and its "
              "file system, then run it again"),
    ErrorSpec("internal", 70, 500, "internal error: {reason}; please report it with the log"),
]

REGISTRY: dict[str, ErrorSpec] = {s.code: s for s in _SPECS}


class DbsafeError(Exception):
    """An error a user can act on. ``code`` is stable; ``details`` fill the message."""

    # what the work that failed had found, printed with the error by --json (verify, drills)
    report: object = None

    def __init__(self, code: str, **details: object) -> None:
        self.spec = REGISTRY[code]
        self.code = code
        self.details: dict[str, Any] = details
        try:
            message = self.spec.template.format(**details)
        except (KeyError, IndexError):
            message = f"{self.spec.template} {details}"
        self.message = message
        super().__init__(f"{code}: {message}")

    @property
    def exit_status(self) -> int:
        return self.spec.exit_status

    @classmethod
    def reported(cls, code: str, message: str) -> DbsafeError:
        """An error raised elsewhere (a job an agent ran), rebuilt from its code and message
        as the catalog keeps them."""
        if code not in REGISTRY:  # a code of a newer dbsafe than this one
            return cls("internal", reason=message)
        error = cls.__new__(cls)
        error.spec, error.code, error.details, error.message = REGISTRY[code], code, {}, message
        Exception.__init__(error, f"{code}: {message}")
        return error

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message,
                "details": {k: str(v) for k, v in self.details.items()}}


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def os_error(exc: BaseException) -> DbsafeError | None:
    """An operating system error that no service turned into an error of its own, as the
    registry's error the user reads instead of ``internal``: it is the host's condition,
    not dbsafe's bug. None for anything else."""
    if not isinstance(exc, OSError):
        return None
    details = {"path": exc.filename or "a file or folder it uses",
               "reason": exc.strerror or str(exc) or type(exc).__name__,
               "errno": errno.errorcode.get(exc.errno or 0, exc.errno)}
    return DbsafeError("system.no_space" if exc.errno in NO_SPACE else "system.io_failed",
                       **details)


def errors_markdown() -> str:
    """docs/errors.md, generated from the registry (a test keeps the two equal)."""
    lines = ["# dbsafe error codes", "",
             "Generated from the registry in `src/dbsafe/core/errors.py` "
             "(`errors_markdown()`); a test keeps this page equal to it.",
             "", "| code | exit status | HTTP status | message |", "| --- | --- | --- | --- |"]
    for spec in _SPECS:
        message = spec.template.replace("|", "\\|")
        lines.append(f"| `{spec.code}` | {spec.exit_status} | {spec.http_status} | {message} |")
    return "\n".join(lines) + "\n"
