"""The resource planner's arithmetic."""

from __future__ import annotations

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.policy.model import DEFAULT_POLICY, Policy
from dbsafe.policy.planner import PlanInput, Rates, changed_share, plan

NO_FIXED = Rates(fixed_seconds=0.0)
NO_LOGS = Policy("nolog", log_every=None, keep_log=None)
WEEKLY = Policy("w", full="weekly", full_days=("sun",), diff_days=("mon", "tue", "wed", "thu",
                "fri", "sat"), keep_daily=None, keep_weekly=12, keep_diff=30, log_every=15,
                keep_log=14)
FAST_NET = 1e9   # megabits/s: the network never binds


def run(**kw) -> dict:
    args = {"cores": 4, "bandwidth_mbps": FAST_NET, "db_count": 10, "db_size_gb": 100,
            "change_rate_pct": 1.0, "policy": NO_LOGS, "rates": NO_FIXED, **kw}
    return plan(PlanInput(**args))


def test_doubling_cores_doubles_the_cpu_bound_rate():
    two = run(cores=2, db_count=100)
    four = run(cores=4, db_count=100)
    # first full: 10^7 MB at 246 MB/s a core
    assert two["first_full_hours"] == pytest.approx(1e7 / (246 * 2) / 3600, abs=1e-3)
    assert four["first_full_hours"] == pytest.approx(two["first_full_hours"] / 2, abs=1e-3)
    assert four["window_hours_needed"] == pytest.approx(two["window_hours_needed"] / 2,
                                                        abs=1e-3)
    assert two["bound_by"] == four["bound_by"] == "cpu"


def test_until_the_bandwidth_binds():
    two = run(cores=2, db_count=100, bandwidth_mbps=100)
    four = run(cores=4, db_count=100, bandwidth_mbps=100)
    # 10^7 MB x 0.206 stored, over 100 Mbit/s = 12.5 MB/s
    assert two["first_full_hours"] == four["first_full_hours"] == \
        pytest.approx(1e7 * 0.206 / 12.5 / 3600, abs=1e-3)
    assert run(cores=4, bandwidth_mbps=10)["bound_by"] == "bandwidth"


def test_a_slow_disk_binds_when_given():
    r = run(disk_mb_s=100)
    assert r["bound_by"] == "disk"
    assert r["work_hours"]["full"] == pytest.approx(1e6 / 100 / 3600, abs=1e-3)


def test_a_daily_full_after_the_first_reads_everything_and_stores_the_changed_blocks():
    r = run()
    # 10^6 MB: 99% already in the vault (1062 MB/s a core), 1% new (246 MB/s a core)
    expected = 1e6 * (0.99 / 1062 + 0.01 / 246) / 4
    assert r["work_hours"] == {"full": pytest.approx(expected / 3600, abs=1e-3)}
    assert r["jobs_on_busiest_day"] == 1


def test_fixed_cost_per_job_and_log_jobs():
    r = plan(PlanInput(cores=4, bandwidth_mbps=FAST_NET, db_count=1, db_size_gb=0.001,
                       change_rate_pct=0, policy=DEFAULT_POLICY.with_changes(log_every=15),
                       wal_gb_per_day=0))
    assert r["jobs_on_busiest_day"] == 1 + 96
    assert r["work_hours"]["log"] == pytest.approx(96 * 0.8 / 3600, abs=1e-3)


def test_changed_share_compounds():
    assert changed_share(1, 1) == pytest.approx(0.01)
    assert changed_share(1, 7) == pytest.approx(1 - 0.99 ** 7)
    assert changed_share(100, 3) == 1.0 and changed_share(0, 30) == 0.0


def test_weekly_policy_busiest_day_and_differentials_growing_through_the_week():
    r = run(policy=WEEKLY, change_rate_pct=10, wal_gb_per_day=0)
    # the Sunday full reads everything, a quarter-new after a week; Saturday's diff scans
    # everything and stores 47% of the blocks: the diff day is the busiest here
    assert r["busiest_day"] == "sat"
    assert set(r["work_hours"]) == {"diff", "log"}
    low = run(policy=WEEKLY, change_rate_pct=0.1, wal_gb_per_day=0)
    assert low["busiest_day"] == "sun" and set(low["work_hours"]) == {"full", "log"}


def test_vault_size_with_daily_fulls_is_steady_after_the_retention_fills():
    r = run(policy=NO_LOGS)                 # keep_daily 30, no logs
    one_full = 1e6 * 0.206 / 1000           # GB
    steady = one_full * (1 + 29 * 0.01)     # 30 kept fulls share their unchanged blocks
    assert r["vault_gb_by_month"][0] == pytest.approx(steady, abs=0.1)
    assert r["vault_gb_by_month"][11] == pytest.approx(steady, abs=0.1)
    assert r["growth_gb_per_month"] == 0


def test_vault_keeps_the_wal_from_the_log_chains_base():
    no_wal = run(policy=DEFAULT_POLICY, wal_gb_per_day=0)["vault_gb_by_month"][5]
    wal = run(policy=DEFAULT_POLICY, wal_gb_per_day=2)["vault_gb_by_month"][5]
    # 10 dbs x 2 GB a day x 0.264 stored, from the base (the full 14 days + <1 day back)
    per_day = 10 * 2 * 0.264
    assert 14 * per_day <= wal - no_wal <= 15 * per_day


def test_long_retention_keeps_growing():
    policy = WEEKLY.with_changes(keep_monthly=12, keep_yearly=7)
    r = run(policy=policy, wal_gb_per_day=0)
    months = r["vault_gb_by_month"]
    assert all(b >= a for a, b in zip(months, months[1:], strict=False))
    assert r["growth_gb_per_month"] > 0


def test_recommended_maximum_is_the_most_that_fits_the_window():
    args = {"db_size_gb": 500, "cores": 2, "change_rate_pct": 5, "policy": DEFAULT_POLICY,
            "window_hours": 4}
    r = run(**args)
    k = r["max_databases"]
    assert 0 < k < 2000 and r["max_databases_limited_by"] == "window"
    assert run(**{**args, "db_count": k})["fits_window"]
    assert not run(**{**args, "db_count": k + 1})["fits_window"]


def test_recommended_maximum_stops_at_the_support_matrix_limit():
    r = run(db_size_gb=0.01)
    assert r["max_databases"] == 2000
    assert "2000" in r["max_databases_limited_by"]


def test_peak_concurrency():
    # full at 01:00 UTC coincides with a log slot: each instance runs its full and a log
    assert run(policy=DEFAULT_POLICY, instances=3)["peak_concurrency"] == 6
    assert run(policy=NO_LOGS, instances=3)["peak_concurrency"] == 3


@pytest.mark.parametrize("bad", [{"cores": 0}, {"bandwidth_mbps": 0}, {"db_count": 0},
                                 {"db_size_gb": -1}, {"change_rate_pct": 101},
                                 {"window_hours": 25}, {"instances": 11},
                                 {"disk_mb_s": 0}])
def test_invalid_inputs(bad):
    with pytest.raises(DbsafeError) as exc:
        run(**bad)
    assert exc.value.code == "plan.invalid"
    assert f"--{next(iter(bad)).replace('_', '-')}" in exc.value.message
