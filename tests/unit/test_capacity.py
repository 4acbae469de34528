import json

import pytest

from bmms_fab import capacity
from bmms_fab.errors import UsageError


def test_published_sizing_for_44_moas_1000_users():
    p = capacity.plan(44, 1000)
    assert p.users_per_moa == 23
    assert (p.app["servers"], p.app["cores"], p.app["memory_gb"]) == (5, 8, 6)
    assert (p.app["gunicorn_workers"], p.app["gunicorn_threads"]) == (17, 2)
    assert (p.pgbouncer["max_client_conn"], p.pgbouncer["pool_size"]) == (1000, 50)
    assert p.pgbouncer["pool_mode"] == "transaction"
    assert p.cache["memory_gb_per_instance"] == 8
    assert (p.cache["masters"], p.cache["replicas"], p.cache["sentinels"]) == (1, 2, 3)
    assert (p.celery["workers"], p.celery["cores"], p.celery["memory_gb"],
            p.celery["concurrency"]) == (5, 2, 2, 4)
    assert p.storage_gb == 100
    assert (p.traffic["avg_rps"], p.traffic["peak_rps"], p.traffic["peak_gbps"]) == (167, 333, 1.4)
    c = p.cost
    assert [c[k] for k in ("app_servers", "database", "cache", "celery", "storage", "network")] \
        == [750, 400, 150, 50, 10, 50]
    assert (c["monthly"], c["annual"]) == (1410, 16920)


def test_db_connections_sized_from_the_pool_not_per_user():
    p = capacity.plan(44, 1000)
    # pool 50 + reserve 10 + admin 20 + replication 4 + superuser 3 = 87 -> 100
    assert p.database["max_connections"] == 100
    assert p.database["max_connections"] >= p.pgbouncer["pool_size"] + p.pgbouncer["reserve_pool"]


def test_scales_with_users():
    small, big = capacity.plan(10, 200), capacity.plan(100, 4000)
    assert small.app["servers"] == 1 and big.app["servers"] == 20
    assert big.cost["monthly"] > small.cost["monthly"]
    assert big.cache["memory_gb_per_instance"] == 32


@pytest.mark.parametrize("moas,users", [(44, 0), (-1, 1000), (0, 10)])
def test_bad_arguments(moas, users):
    with pytest.raises(UsageError) as exc:
        capacity.plan(moas, users)
    assert "at least 1" in str(exc.value)


def test_report_and_json_roundtrip():
    p = capacity.plan(44, 1000)
    text = capacity.report(p)
    assert "$1,410 per month, $16,920 per year" in text and "23 users per MOA" in text
    assert json.loads(json.dumps(p.to_dict()))["cost"]["annual"] == 16920


def test_sizing_vars_are_inventory_vars():
    from bmms_fab.inventory import VARS
    assert set(capacity.sizing_vars(capacity.plan(44, 1000))) <= set(VARS)
