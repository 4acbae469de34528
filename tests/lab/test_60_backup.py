"""Backups on the lab: a verified backup, the database destroyed and restored with every row
back (checksums), Redis and media restored, retention, no overlap, cron line."""

import fcntl
import json
import time
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from bmms_fab import backup, backupjob, executor, failover
from bmms_fab.errors import UsageError
from tests.conftest import ROOT
from tests.lab.conftest import lb_get, ssh

CHECKSUM = ("SELECT count(*) || ':' || md5(coalesce(string_agg(id || '|' || text || '|' || "
            "source || '|' || task_id, ',' ORDER BY id), '')) FROM core_note;")


def inv(*args):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)


def by(targets, name):
    return next(t for t in targets if t.name == name)


def primary_of(lab_env):
    return failover.effective(lab_env, failover.read_state(lab_env))[0]


def db_checksum(targets, host):
    with executor.Session(by(targets, host)) as s:
        return s.run("runuser -u postgres -- psql -X -Atq -d bmms -f -", "checksum",
                     stdin=CHECKSUM.encode()).strip()


def redis_cli(targets, lab_secrets, host, address, *commands):
    with executor.Session(by(targets, host)) as s:
        return s.run(f"redis-cli --no-auth-warning -h {address} -p 6379", "redis", stdin=(
            f"AUTH {lab_secrets['redis_password']}\n" + "\n".join(commands) + "\n").encode())


@pytest.fixture(scope="module")
def made(deployed, lab_env, targets, lab_secrets):
    """Rows, a Redis key and a media file, then `inv backup --verify`."""
    from bmms_fab import verify as vf
    with executor.Session(by(targets, "lb1")) as s:
        for i in range(10):           # lb_request waits out the API rate limit if it bites
            status, _ = vf.lb_request(s, lab_env, "POST", "/api/notes/",
                                      json.dumps({"text": f"backup row {i}"}))
            assert status == 201
    redis_cli(targets, lab_secrets, "cache1", "198.18.0.31", "SET bmms:backup-test kept-value")
    ssh(by(targets, "app1"), "echo media-content > /srv/bmms/shared/media/upload.txt")
    before = db_checksum(targets, primary_of(lab_env))
    r = inv("backup", "--hosts", "lab", "--verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(r.stdout.strip().splitlines()) == 1, r.stdout       # one summary line
    return r.stdout.strip(), before


def backup_id(line):
    return line.split()[1].rstrip(":")


def test_verified_backup_has_a_manifest_and_row_counts(made, lab_env, targets):
    line, _ = made
    assert ": good, db from db2" in line or ": good, db from db3" in line, line
    bid = backup_id(line)
    mon1 = by(targets, "mon1")
    files = ssh(mon1, f"cd /var/backups/bmms/{bid} && sha256sum -c --quiet MANIFEST.sha256 && ls")
    for name in ("db.dump", "globals.sql", "redis.rdb", "media-app1.tar.gz", "backup.json",
                 "MANIFEST.sha256"):
        assert name in files.split()
    meta = json.loads(ssh(mon1, f"cat /var/backups/bmms/{bid}/backup.json"))
    assert meta["status"] == "good" and meta["tables"]["public.core_note"] >= 10
    assert ssh(mon1, f"stat -c %a /var/backups/bmms/{bid}").strip() == "700"


def test_destroyed_database_comes_back_with_every_row(made, lab_env, targets, lab_secrets):
    line, before = made
    primary = primary_of(lab_env)
    with executor.Session(by(targets, primary)) as s:
        s.run("runuser -u postgres -- psql -X -q -f -", "destroy",
              stdin=b"DROP DATABASE bmms WITH (FORCE);")
    status, _ = lb_get(lab_env, targets, "/ready/")
    assert status != 200              # 503, or no answer in time while PgBouncer retries
    redis_cli(targets, lab_secrets, "cache1", "198.18.0.31", "DEL bmms:backup-test")
    ssh(by(targets, "app1"), "rm /srv/bmms/shared/media/upload.txt")
    r = inv("restore", "--hosts", "lab", "--backup", backup_id(line), "--redis", "--media")
    assert r.returncode == 0, r.stdout + r.stderr
    assert db_checksum(targets, primary) == before
    for replica in ("db2", "db3"):
        if replica != primary:
            for _ in range(20):
                if db_checksum(targets, replica) == before:
                    break
            assert db_checksum(targets, replica) == before
    for _ in range(60):               # PgBouncer's server_login_retry backoff
        if lb_get(lab_env, targets, "/ready/")[0] == 200:
            break
        time.sleep(0.5)
    assert lb_get(lab_env, targets, "/ready/")[0] == 200
    assert "kept-value" in redis_cli(targets, lab_secrets, "cache1", "198.18.0.31",
                                     "GET bmms:backup-test")
    assert ssh(by(targets, "app1"), "cat /srv/bmms/shared/media/upload.txt").strip() == "media-content"


def test_restore_checks_the_manifest_first(made, lab_env, targets):
    line, _ = made
    bid = backup_id(line)
    mon1 = by(targets, "mon1")
    ssh(mon1, f"cp /var/backups/bmms/{bid}/globals.sql /tmp/g && echo tampered >> /var/backups/bmms/{bid}/globals.sql")
    try:
        r = inv("restore", "--hosts", "lab", "--backup", bid)
        assert r.returncode == 1 and "do not match MANIFEST.sha256" in r.stderr
    finally:
        ssh(mon1, f"cp /tmp/g /var/backups/bmms/{bid}/globals.sql")


def test_restore_outside_the_lab_needs_yes(inv_prod=None):
    from tests.conftest import ROOT as root
    from bmms_fab import inventory, restore
    prod = inventory.load(root / "hosts.yml").env("prod")
    with pytest.raises(UsageError) as exc:      # refused before any connection
        restore.restore(prod, None, "20261201T000000Z")
    assert "add --yes" in str(exc.value)


def test_retention_removes_exactly_the_expired(made, lab_env, targets):
    mon1 = by(targets, "mon1")
    now = datetime.now(timezone.utc)
    fake = [backup.new_id(now - timedelta(days=d, hours=1)) for d in (3, 20, 29, 31, 40, 95)]
    ssh(mon1, "cd /var/backups/bmms && mkdir " + " ".join(fake))
    have = [l for l in ssh(mon1, "ls /var/backups/bmms").split() if backup.ID_RE.match(l)]
    # what must go: older than 30 days, keeping at least backup_min_keep (7) newest
    expect = backup.expired(have + ["99999999T999999Z"], now, 30, 7)
    assert set(expect) == {fake[3], fake[4], fake[5]} - set(sorted(have, reverse=True)[:6])
    r = inv("backup", "--hosts", "lab")
    assert r.returncode == 0, r.stderr
    left = set(ssh(mon1, "ls /var/backups/bmms").split())
    assert not (set(expect) & left) and {fake[0], fake[1], fake[2]} <= left


def test_a_second_backup_while_one_runs_exits_with_a_message(made, lab_env):
    with open(backupjob.state_dir() / "backup-lab.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = inv("backup", "--hosts", "lab")
    assert r.returncode != 0 and "already running" in r.stderr


def test_cron_line_and_quiet_runs(made, lab_env):
    r = inv("backup.cron", "--hosts", "lab")
    assert r.returncode == 0
    assert r.stdout.startswith("15 2 * * * root cd ") and "backup --hosts lab --verify --quiet" in r.stdout
    r = inv("backup", "--hosts", "lab", "--quiet")
    assert r.returncode == 0 and r.stdout == ""
    assert "ok backup" in backupjob.log_path(lab_env).read_text()
