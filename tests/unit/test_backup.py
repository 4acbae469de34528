from datetime import datetime, timedelta, timezone

from bmms_fab import backup

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def ids(*days_ago):
    return [backup.new_id(NOW - timedelta(days=d)) for d in days_ago]


def test_retention_removes_exactly_the_expired():
    names = ids(0, 1, 10, 29, 31, 45, 90)
    assert backup.expired(names, NOW, days=30, min_keep=3) == sorted(ids(31, 45, 90))


def test_retention_never_goes_below_the_minimum_count():
    names = ids(40, 50, 60, 70)
    assert backup.expired(names, NOW, days=30, min_keep=3) == ids(70)
    assert backup.expired(names, NOW, days=30, min_keep=10) == []


def test_retention_ignores_other_names():
    names = ids(100) + [".20260101T000000Z.partial", "notes.txt", "lost+found"]
    assert backup.expired(names, NOW, days=30, min_keep=0) == ids(100)


def test_secret_goes_on_the_line_after_the_read():
    script = backup.dump_script("/b/x", "198.18.0.22")
    data = backup._with_secret(script, "pw-123").decode().splitlines()
    assert data[1] == "IFS= read -r PGPASSWORD; export PGPASSWORD" and data[2] == "pw-123"
    assert "pw-123" not in script


def test_cron_file_runs_a_quiet_verified_backup(inv, tmp_path):
    from bmms_fab import backupjob
    env = inv.env("prod")
    line = backupjob.cron_line(env)
    path = backupjob.install_cron(env, line, directory=tmp_path)
    text = path.read_text()
    assert path.name == "bmms-fab-backup-prod" and oct(path.stat().st_mode & 0o777) == "0o644"
    entry = [l for l in text.splitlines() if l and not l.startswith("#") and "=" not in l.split()[0]]
    assert entry == [line]
    fields = line.split()
    assert fields[:5] == ["15", "2", "*", "*", "*"] and fields[5] == "root"
    assert line.endswith("./bmms-fab backup --hosts prod --verify --quiet")
