#!/usr/bin/env python3
"""dbsafe backup and restore per vault kind, beside pgBackRest plain and encrypted.

Run as root from the checkout:   .venv/bin/python bench/vaults.py --keep

On the dataset cluster of bench/run.py, one full backup then one restore (into a new data
dir, not started) per kind: dbsafe into a local vault, a local encrypted vault, S3 (moto on
loopback), S3 encrypted and Azure Blob (Azurite on loopback); pgBackRest into a plain repo
and one with ``repo1-cipher-type=aes-256-cbc``. Reported: seconds, MB/s, bytes stored,
peak RSS per step; ratios of every dbsafe kind to the local plain vault, and the cost of
encryption (encrypted / plain) for dbsafe and for pgBackRest. Results go to
bench/results/<timestamp>-vaults.json and a table on stdout. The measuring (``measure``:
wall time, CPU, peak RSS of the process tree, "disturbed" detection and retries) and the
steps are bench/run.py's; this script adds the vault kinds and the encrypted peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402
import run  # noqa: E402
from dataset import BIN, PG_USER, log  # noqa: E402
from run import (  # noqa: E402
    CPUS,
    RESULTS,
    SERVER,
    STANZA,
    Bench,
    chown_postgres,
    git_commit,
    median_of,
    pgbackrest_conf,
    version,
    warm,
)

sys.path.append(str(run.ROOT / "tests"))  # the loopback servers the test suite starts
from servers.azurite import AZURITE_BLOB, Azurite  # noqa: E402
from servers.moto import S3_ENV, MotoServer  # noqa: E402

# dbsafe vault kinds: (object store or None for a local folder, encrypted)
VAULT_KINDS = {
    "local": (None, False),
    "local_enc": (None, True),
    "s3": ("s3", False),
    "s3_enc": ("s3", True),
    "azure": ("azure", False),
}
PEERS = ("pgbackrest", "pgbackrest_enc")  # pgBackRest: a plain and an encrypted repo
ALL_KINDS = [*VAULT_KINDS, *PEERS]
BUCKET = "dbsafe-bench"  # the S3 bucket and the Azure container; a prefix per vault
SECRET_ENV = ("AWS_", "AZURE_", "DBSAFE_PASSPHRASE")
OBJECT_BYTES = """
import sys
from dbsafe.storage import open_storage
storage = open_storage(sys.argv[1])
names = list(storage.list(""))
print(sum(storage.size(n) for n in names))
for n in names if sys.argv[2] == "True" else ():
    storage.delete(n)
storage.close()
"""


def step_names(kind: str) -> tuple[str, str]:
    """The (backup, restore) step names of a kind."""
    prefix = kind if kind in PEERS else f"dbsafe_{kind}"
    return f"{prefix}_full", f"{prefix}_restore"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


class VaultBench(Bench):
    """bench/run.py's Bench with other steps: its setup (dataset server, archiving into
    pgBackRest), measuring, retries, restores and teardown, plus the emulators, an
    encrypted pgBackRest repo and one vault per kind."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.kinds = args.kinds
        # random per run, never printed or written outside the run's folder
        self.passphrase = secrets.token_urlsafe(24)
        self.cipher_pass = secrets.token_urlsafe(24)
        self.emulators: dict[str, MotoServer | Azurite] = {}
        self.pgbr_repos: dict[str, tuple[Path, Path]] = {}  # kind -> (config, repo)

    # setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.pgbr_repos["pgbackrest"] = (self.pgbr_conf, self.pgbr_repo)
        self.setup_encrypted_pgbackrest()
        stores = {VAULT_KINDS[k][0] for k in self.kinds if k in VAULT_KINDS} - {None}
        if "s3" in stores:
            folder = self.logs / "moto"  # its request log is kept with the step logs
            folder.mkdir()
            self.emulators["s3"] = MotoServer(folder).start()
            log(f"moto server on port {self.emulators['s3'].port}")
        if "azure" in stores:
            folder = self.run_dir / "azurite-server"
            folder.mkdir()
            self.emulators["azure"] = Azurite(folder).start()
            log(f"Azurite on port {self.emulators['azure'].port}")

    def setup_encrypted_pgbackrest(self) -> None:
        """A second pgBackRest config and repo, with ``repo1-cipher-type=aes-256-cbc``; the
        archive command pushes every WAL segment into both repos."""
        folder = self.run_dir / "pgbackrest-enc"
        for sub in ("repo", "log", "lock", "spool"):
            (folder / sub).mkdir(parents=True)
            chown_postgres(folder / sub)
        chown_postgres(folder)
        conf, repo, c = folder / "pgbackrest.conf", folder / "repo", self.cluster
        conf.touch(mode=0o600)  # it holds the cipher pass: never readable by others
        conf.write_text(pgbackrest_conf(repo, folder, c.pgdata, c.port, c.socket_dir).replace(
            "[global]\n", "[global]\nrepo1-cipher-type=aes-256-cbc\n"
            f"repo1-cipher-pass={self.cipher_pass}\n", 1))
        chown_postgres(conf)
        self.pgbr_repos["pgbackrest_enc"] = (conf, repo)
        push = " && ".join(f"pgbackrest --config={cfg} --stanza={STANZA} archive-push %p"
                           for cfg, _ in self.pgbr_repos.values())
        self.cluster.psql(f"ALTER SYSTEM SET archive_command = '{push}'")
        self.cluster.psql("SELECT pg_reload_conf()")
        self.use_pgbackrest("pgbackrest_enc")
        self.pgbackrest("stanza-create")
        self.pgbackrest("check")
        log("encrypted pgBackRest repo: stanza-create and check: ok")

    def use_pgbackrest(self, kind: str) -> None:
        """Point Bench's pgBackRest steps at the plain or the encrypted repo."""
        self.pgbr_conf, self.pgbr_repo = self.pgbr_repos[kind]

    def teardown(self) -> None:
        for emulator in self.emulators.values():
            emulator.stop()
        azurite_log = self.run_dir / "azurite-server" / "azurite.log"
        if azurite_log.exists():
            shutil.copy(azurite_log, self.logs)
        super().teardown()

    # one vault per kind --------------------------------------------------------------------

    def kind_env(self, kind: str) -> dict[str, str]:
        """The environment of dbsafe's commands for a kind: the store's credentials, the
        passphrase of an encrypted vault, and nothing else of the kind."""
        store, encrypted = VAULT_KINDS[kind]
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV)}
        env["PGUSER"] = PG_USER
        if encrypted:
            env["DBSAFE_PASSPHRASE"] = self.passphrase
            env["DBSAFE_KEY_DIR"] = str(self.run_dir / "keys")  # not /etc/dbsafe/keys
        if store == "s3":
            env.update(S3_ENV)
        elif store == "azure":
            env.update(self.emulators["azure"].env())
        return env

    def new_kind_vault(self, kind: str) -> tuple[Path, str | None]:
        """A new vault of ``kind`` with the dataset server added: its folder (for an object
        store, the client folder) and its object store location."""
        store, encrypted = VAULT_KINDS[kind]
        self.vault_no += 1
        vault = self.run_dir / f"vault-{self.vault_no}-{kind}"
        location = (self.emulators[store].location(BUCKET, f"vault-{self.vault_no}")
                    if store else None)
        init = ["vault", "init", "--json",
                *(["--repository", location] if location else []),
                *(["--encryption", "on"] if encrypted else [])]
        for argv in (init, ["vault", "restore-roots", "add", str(self.run_dir), "--json"],
                     ["server", "add", SERVER, "--pgdata", str(self.cluster.pgdata),
                      "--port", str(self.cluster.port), "--json"]):
            proc = subprocess.run([*self.dbsafe, "--vault", str(vault), *argv],
                                  capture_output=True, text=True, env=self.env)
            if proc.returncode != 0:
                raise RuntimeError(f"dbsafe {' '.join(argv)} failed: {proc.stdout}"
                                   f"{proc.stderr}")
        return vault, location

    def object_bytes(self, location: str | None, delete: bool = False) -> int:
        """Bytes of every object at an object store location (0 for a local vault, whose
        objects ``du`` of its folder counts); ``delete`` removes them afterwards. Listed by
        a child process through dbsafe's storage: this process stays small, since a child's
        ``ru_maxrss`` starts from its parent's RSS at the fork (``measure`` reports it)."""
        if location is None:
            return 0
        proc = subprocess.run([self.dbsafe[0], "-c", OBJECT_BYTES, location, str(delete)],
                              capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise RuntimeError(f"listing {location} failed: {proc.stderr[-2000:]}")
        return int(proc.stdout)

    def emulator_cpu(self, kind: str) -> float:
        """CPU seconds the kind's object store emulator (and its children) used so far."""
        emulator = self.emulators.get(VAULT_KINDS[kind][0])
        if emulator is None:
            return 0.0
        table = run._proc_table()
        return sum(table[p][2] for p in run._descendants(table, [emulator.proc.pid]))

    def with_emulator(self, kind: str, step: Callable[[], dict]) -> dict:
        """Run a measured step; the emulator's CPU is counted apart, not as "other" (which
        flags a step disturbed): it serves the step, like the PostgreSQL server does."""
        before = self.emulator_cpu(kind)
        r = step()
        if VAULT_KINDS[kind][0]:
            used = round(self.emulator_cpu(kind) - before, 2)
            cpu = r["cpu_seconds_during_step"]
            cpu["emulator"] = used
            cpu["other"] = r["other_cpu_seconds"] = round(max(0.0, cpu["other"] - used), 2)
            r["emulator_cpu_seconds"] = used
        return r

    # the run -----------------------------------------------------------------------------

    def repetition(self, rep: int) -> None:
        self.restored = {}
        for kind in self.kinds:
            (self.peer_steps if kind in PEERS else self.vault_steps)(kind, rep)

    def step_name(self, step: str, rep: int) -> str:
        return f"{step}-{rep}-{len(self.runs.get(step, [])) + 1}"

    def peer_steps(self, kind: str, rep: int) -> None:
        full, restore = step_names(kind)
        self.use_pgbackrest(kind)
        self.attempt(full, lambda: self.pgbackrest_full(self.step_name(full, rep)))
        self.attempt(restore, lambda: self.pgbackrest_restore(self.step_name(restore, rep)))
        self.finish_restore("pgbackrest", kind, rep)

    def vault_steps(self, kind: str, rep: int) -> None:
        full, restore = step_names(kind)
        self.env = self.kind_env(kind)
        state: dict = {}

        def backup() -> dict:
            if "vault" in state:  # a retry: the full backup needs an empty vault again
                self.drop_vault(state)
            state["vault"], state["location"] = self.new_kind_vault(kind)
            before = self.object_bytes(state["location"])
            r = self.with_emulator(kind, lambda: self.dbsafe_backup(
                state["vault"], self.step_name(full, rep)))
            r["bytes_stored"] += self.object_bytes(state["location"]) - before
            state["point"] = r["dbsafe_json"]["point_id"]
            return r

        def restore_step() -> dict:
            if kind == "azure":  # Azurite keeps the blobs on disk: warm them too
                warm(self.emulators["azure"].folder)
            return self.with_emulator(kind, lambda: self.dbsafe_restore(
                state["vault"], state["point"], self.step_name(restore, rep)))

        self.attempt(full, backup)
        self.attempt(restore, restore_step)
        self.finish_restore("dbsafe", kind, rep)
        self.drop_vault(state)

    def finish_restore(self, tool: str, kind: str, rep: int) -> None:
        """Check the restored data dir (--verify-restores, last repetition), remove it."""
        target = self.restored.pop(tool)
        if self.args.verify_restores and rep == self.args.repeat:
            check = self.checks[kind] = self.check_restored(target, kind)
            log(f"  restored {kind} cluster started and queried: "
                f"matches source = {check['matches_source']}")
        shutil.rmtree(target)

    def drop_vault(self, state: dict) -> None:
        self.object_bytes(state.pop("location"), delete=True)
        shutil.rmtree(state.pop("vault"))

    # the report --------------------------------------------------------------------------

    def report(self, meta: dict, elapsed: float) -> dict:
        med, med_all, counts = {}, {}, {}
        for step, runs in self.runs.items():
            calm = [r for r in runs if not r["disturbed"]]
            med[step] = median_of(calm or runs)
            med_all[step] = median_of(runs)
            counts[step] = {"runs": len(runs), "undisturbed": len(calm)}
        result = {
            "timestamp": self.stamp,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": CPUS, "platform": platform.platform(),
                        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3]},
            "versions": {"dbsafe": self.code, "git_head_at_end": git_commit(),
                         "pgbackrest": version(["pgbackrest", "version"]),
                         "postgres": version([str(BIN / "postgres"), "--version"]),
                         "moto": metadata.version("moto"),
                         "azurite": json.loads((AZURITE_BLOB.parents[1] / "azurite" /
                                                "package.json").read_text())["version"],
                         "python": platform.python_version()},
            "dataset": meta,
            "database_bytes": self.db_bytes,
            "repeat": self.args.repeat,
            "kinds": self.kinds,
            "settings": {
                "dbsafe": "vault init [--repository s3://|azure://...] [--encryption on "
                          "(DBSAFE_PASSPHRASE)]; backup --type full --json; restore "
                          "--to-pgdata (not started)",
                "pgbackrest": "bench/run.py's config; pgbackrest_enc adds "
                              "repo1-cipher-type=aes-256-cbc; archive-push into both repos",
                "object_stores": "moto_server (S3, objects in memory) and Azurite (blobs on "
                                 "local disk) on 127.0.0.1, one process each",
                "bytes_stored": "du of the vault folder plus the objects' sizes in the "
                                "object store (listed through dbsafe's storage)",
                "emulator_cpu": "CPU s of the emulator during the step, not counted as "
                                "'other' for the disturbed flag",
            },
            "median": med,
            "median_all_runs": med_all,
            "run_counts": counts,
            "runs": self.runs,
            "ratios": ratios(med),
            "restore_checks": self.checks,
            "elapsed_seconds": round(elapsed, 1),
        }
        path = run.save_results(f"{self.stamp}-vaults", result)
        print_table(result)
        log(f"results: {path}")
        return result

    def secrets_leaked(self) -> list[str]:
        """Files of this run's results holding the passphrase or the cipher pass."""
        found = []
        for path in RESULTS.glob(f"{self.stamp}*"):
            for f in [path] if path.is_file() else path.rglob("*"):
                if f.is_file() and any(s.encode() in f.read_bytes()
                                       for s in (self.passphrase, self.cipher_pass)):
                    found.append(str(f))
        return found


def ratios(med: dict) -> dict:
    """Each dbsafe kind against the local plain vault; encrypted against plain (dbsafe,
    pgBackRest) and dbsafe's cost of encryption against pgBackRest's."""
    def m(kind: str, step: int, key: str = "seconds") -> float | None:
        got = med.get(step_names(kind)[step], {})
        if key == "cpu":  # the tool's CPU s: less sensitive than time to others' load
            return got["cpu_user_seconds"] + got["cpu_sys_seconds"] if got else None
        return got.get(key)

    out: dict[str, float | None] = {}
    for kind in VAULT_KINDS:
        if kind not in ("local", "local_enc"):  # local_enc: with the costs of encryption
            out[f"{kind}_vs_local_backup"] = ratio(m(kind, 0), m("local", 0))
            out[f"{kind}_vs_local_restore"] = ratio(m(kind, 1), m("local", 1))
            out[f"{kind}_vs_local_stored"] = ratio(m(kind, 0, "bytes_stored"),
                                                   m("local", 0, "bytes_stored"))
    for enc, plain in (("local_enc", "local"), ("s3_enc", "s3"),
                       ("pgbackrest_enc", "pgbackrest")):
        for i, what in enumerate(("backup", "restore")):
            out[f"{enc}_vs_{plain}_{what}"] = ratio(m(enc, i), m(plain, i))
            out[f"{enc}_vs_{plain}_{what}_cpu"] = ratio(m(enc, i, "cpu"), m(plain, i, "cpu"))
        out[f"{enc}_vs_{plain}_stored"] = ratio(m(enc, 0, "bytes_stored"),
                                                m(plain, 0, "bytes_stored"))
    for i, what in enumerate(("backup", "restore")):
        for cpu in ("", "_cpu"):
            out[f"encryption_cost_dbsafe_vs_pgbackrest_{what}{cpu}"] = ratio(
                out[f"local_enc_vs_local_{what}{cpu}"],
                out[f"pgbackrest_enc_vs_pgbackrest_{what}{cpu}"])
        out[f"local_vs_pgbackrest_{what}"] = ratio(m("local", i), m("pgbackrest", i))
    return {k: v for k, v in out.items() if v is not None}


def print_table(res: dict) -> None:
    med, counts = res["median"], res["run_counts"]
    print()
    print(f"database: {res['database_bytes'] / 1e9:.3f} GB; {res['repeat']} repetition(s), "
          f"median of the undisturbed runs; {res['machine']['cpus']} cores; dbsafe "
          f"{res['versions']['dbsafe']['git_head']}")
    head = (f"{'step':26} {'seconds':>8} {'own s':>6} {'MB/s':>6} {'stored MB':>10} "
            f"{'peak RSS MB':>11} {'CPU s':>6} {'emul. CPU s':>11} {'others CPU s':>12} "
            f"{'runs':>5}")
    print(head)
    print("-" * len(head))
    for kind in res["kinds"]:
        for step in step_names(kind):
            m, c = med[step], counts[step]
            stored = f"{m['bytes_stored'] / 1e6:10.1f}" if "bytes_stored" in m else f"{'-':>10}"
            own = f"{m['dbsafe_seconds']:6.1f}" if "dbsafe_seconds" in m else f"{'-':>6}"
            emul = m.get("emulator_cpu_seconds")
            print(f"{step:26} {m['seconds']:8.1f} {own} {m['mb_per_s']:6.0f} {stored} "
                  f"{m['peak_rss_tree_mb']:11.0f} "
                  f"{m['cpu_user_seconds'] + m['cpu_sys_seconds']:6.1f} "
                  f"{'-' if emul is None else f'{emul:.1f}':>11} "
                  f"{m['other_cpu_seconds']:12.1f} {c['undisturbed']}/{c['runs']:<3}")
    print()
    for key, value in res["ratios"].items():
        print(f"{key:48} {value:>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each measurement N times and report the median")
    ap.add_argument("--kinds", default=",".join(ALL_KINDS),
                    help=f"comma-separated subset of {','.join(ALL_KINDS)} (in this order)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the dataset cluster's data dir for the next run (the server "
                         "is stopped either way)")
    ap.add_argument("--keep-run", action="store_true",
                    help=f"keep this run's vaults, repos and logs under {dataset.BASE}/run-*")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the dataset cluster")
    run.retry_options(ap, retries=2, budget_minutes=20)
    ap.add_argument("--verify-restores", action="store_true",
                    help="after the last repetition's restores (untimed), start each "
                         "restored cluster and compare row counts and a hash of the data")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown or not kinds:
        ap.error(f"--kinds: unknown {unknown}; choose from {','.join(ALL_KINDS)}")
    args.kinds = [k for k in ALL_KINDS if k in kinds]
    run.require_root()
    bench = VaultBench(args)
    try:
        run.run_to_end(bench)
    finally:
        leaked = bench.secrets_leaked()
        log(f"secrets in this run's results: {leaked or 'none'}")


if __name__ == "__main__":
    main()
