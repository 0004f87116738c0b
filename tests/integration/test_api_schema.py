"""The REST API against its own OpenAPI document, with schemathesis run
as a subprocess against a real ``dbsafe serve``:

(a) as a Backup Contributor, on a vault with one registered server (path parameter
    ``server`` pinned to it), every check: no 5xx, every status and body as documented
    (errors are ``{"error": {code, message, details}}``, COMMON_RESPONSES in api/errors.py),
    invalid data refused, 405 with a true ``Allow``;
(b) without a token: every operation 401;
(c) oversized (70 KiB) and malformed JSON bodies on POST endpoints: 413 / 422 with a code.

Left out of (a): operations that would write where the generated data says on this host
(restores into random folders, scratch clusters, instant instances) or forget the one
server; test_api.py and the instant access tests cover them with real data.

The document is fetched with a token (it needs one, like the rest of the API) and given to
schemathesis as a file. Runs are derandomised with a fixed seed, so CI cannot fail by
chance; ``DBSAFE_FUZZ_RANDOM=1`` runs many more examples with a new seed each time, for
maintainers hunting (``DBSAFE_FUZZ_SEED=N`` replays the run that printed ``Seed: N``;
docs/api.md, *Fuzzing*)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import secrets_guard
from api_serve import Serve, start_serve
from conftest import make_area, make_vault, new_cluster, remove_area

SEED = 15_2026  # any fixed number: the same cases every run
RANDOM = os.environ.get("DBSAFE_FUZZ_RANDOM") == "1"
RANDOM_EXAMPLES = 200  # per operation, in the randomised run
EXCLUDED = [  # left out of (a); see the module's docstring
    "POST /api/v1/servers/{server}/restores",
    "POST /api/v1/servers/{server}/drills",
    "POST /api/v1/servers/{server}/instant",
    "DELETE /api/v1/servers/{server}",
]
CONFIG = """
headers = { Authorization = "Bearer ${DBSAFE_TEST_TOKEN}" }
generation.max-examples = %(examples)d
[parameters]
"path.server" = "db"
[checks.positive_data_acceptance]
# The schema bounds every field; what only the service can judge (is this folder a data
# directory, is this time zone known, does this policy's combination of settings hold)
# answers 400 or 422 with its code, as documented.
expected-statuses = ["2xx", 400, 401, 403, 404, 409, 422]
[checks.negative_data_rejection]
# schemathesis's own list, and 413: a body over 64 KiB (2,001 names, say) is refused before
# anything parses it, whatever it holds
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
"""


@pytest.fixture(scope="module")
def served(pg_template: Path, cli_env: dict[str, str]) -> Iterator[Serve]:
    area = make_area("apischema-")
    serve = None
    try:
        pg = new_cluster(pg_template, area, "db")
        env = {**cli_env, "DBSAFE_RUN_DIR": str(area / "run")}  # the agent, if protected
        vault = make_vault(env, area / "vault")
        vault.add_server("db", pg)
        serve = start_serve(vault, area / "serve.log")
        yield serve
    finally:
        if serve is not None:
            serve.stop()
        remove_area(area)


def schemathesis(serve: Serve, role: str | None, *args: str, examples: int = 8,
                 phases: str = "examples,coverage,fuzzing") -> subprocess.CompletedProcess:
    """``schemathesis run`` against the serve's OpenAPI document (fetched with a token);
    the token goes through the environment into a config file's header (never on a
    command line or in the output)."""
    folder = serve.log.parent
    spec = folder / "openapi.json"
    with serve.client("reader") as c:
        spec.write_text(c.get(f"{serve.url}/openapi.json").raise_for_status().text)
    config = folder / f"schemathesis-{role}.toml"
    text = CONFIG % {"examples": RANDOM_EXAMPLES if RANDOM else examples}
    if role is None:  # no token: even valid data must be answered 401
        text = text.replace('headers = { Authorization = "Bearer ${DBSAFE_TEST_TOKEN}" }\n',
                            "").replace('["2xx", 400, 401, 403, 404, 409, 422]', "[401]")
    config.write_text(text)
    chance = ["--seed", str(SEED), "--generation-deterministic"]
    if RANDOM:  # a new seed each run, unless one is given to replay a finding
        chance = ["--seed", os.environ["DBSAFE_FUZZ_SEED"]] \
            if os.environ.get("DBSAFE_FUZZ_SEED") else []
    env = {**serve.vault.env, "DBSAFE_TEST_TOKEN": serve.tokens.get(role or "reader", "")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--no-color",
         "--config-file", str(config), "run", str(spec), "--url", serve.url,
         "--workers", "1", "--phases", phases, "--max-failures", "50",
         "--request-timeout", "60", *chance, *args],
        capture_output=True, text=True, env=env, cwd=folder, timeout=3600 if RANDOM else 600)
    leaks = secrets_guard.leaks_in(proc.stdout + proc.stderr)
    assert not leaks, "schemathesis printed a token"
    return proc


def failures(proc: subprocess.CompletedProcess, serve: Serve) -> str:
    """What schemathesis found (its FAILURES section, else the end of its output), the seed
    it used, and the serve's tracebacks (a 500 says only ``internal``)."""
    out = proc.stdout
    start = out.find("FAILURES")
    end = out.find("WARNINGS", start) if start >= 0 else -1
    seed = [line.strip() for line in out.splitlines() if line.strip().startswith("Seed")]
    log = serve.log.read_text()
    tracebacks = log[log.find("Traceback") - 300:][-12000:] if "Traceback" in log else ""
    return ((out[start:end] if start >= 0 else out[-5000:])[:30000] + "\n".join(seed)
            + proc.stderr[-2000:] + "\nserve log:\n" + tracebacks)


def test_contributor_conforms(served: Serve):
    excluded = [arg for name in EXCLUDED for arg in ("--exclude-name", name)]
    proc = schemathesis(served, "contributor", "--checks", "all", *excluded, examples=8)
    assert proc.returncode == 0, failures(proc, served)


def test_no_token_everything_401(served: Serve):
    proc = schemathesis(served, None, "--checks",
                        "not_a_server_error,positive_data_acceptance,content_type_conformance",
                        "--exclude-path", "/api/v1/health", examples=3, phases="fuzzing")
    assert proc.returncode == 0, failures(proc, served)
    for path in ("/openapi.json", "/api/docs"):  # the document needs a token too
        r = httpx.get(f"{served.url}{path}")
        assert r.status_code == 401 and r.json()["error"]["code"] == "auth.required"


def test_oversized_and_malformed_bodies(served: Serve):
    big = json.dumps({"name": "x" * (70 << 10)})
    with served.client("contributor") as c:
        for path in ("/servers", "/policies", "/servers/db/backups", "/planner",
                     "/servers/db/protection", "/alert-channels"):
            r = c.post(path, content=big, headers={"Content-Type": "application/json"})
            assert r.status_code == 413, (path, r.status_code)
            assert r.json()["error"]["code"] == "request.too_large"
            for bad in (b"{", b"[1, 2", b"\xff\xfe", b'{"name": }', b"null", b"42"):
                r = c.post(path, content=bad, headers={"Content-Type": "application/json"})
                assert r.status_code == 422, (path, bad, r.status_code, r.text)
                assert r.json()["error"]["code"] == "request.invalid"
