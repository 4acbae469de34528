"""The engine on real hosts: converge, idempotence, handlers once and only when needed, pending
handlers survive a failed run, --diff writes nothing, strict host keys, sudo users."""

import dataclasses
import io

import jinja2
import pytest

from bmms_fab import engine, executor
from bmms_fab.errors import StepError
from bmms_fab.executor import HostKeyError
from bmms_fab.plan import DAEMON_RELOAD, HostPlan, ManagedFile, reload, restart
from tests.lab.conftest import ssh

UNIT = """\
[Unit]
Description=bmms-fab engine test service
[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/sh -c 'test ! -e /etc/bmms-labtest/fail-reload && echo reload >> /run/bmms-labtest.reloads'
[Install]
WantedBy=multi-user.target
"""
TEMPLATE = jinja2.Template("# file {{ i }} of {{ host.name }}\naddress = {{ host.address }}\n"
                           "value = {{ value }}\n", undefined=jinja2.StrictUndefined)


def plan_for(host, values=None, extra=()):
    """10 templated files per host: f0 notifies a reload, f1 a restart, the unit both."""
    values = values or {}
    files = [ManagedFile("/etc/systemd/system/bmms-labtest.service", UNIT.encode(),
                         notify=(DAEMON_RELOAD, restart("bmms-labtest")))]
    for i in range(9):
        notify = (reload("bmms-labtest"),) if i == 0 else (restart("bmms-labtest"),) if i == 1 else ()
        content = TEMPLATE.render(i=i, host=host, value=values.get(i, "v1")).encode()
        files.append(ManagedFile(f"/etc/bmms-labtest/f{i}.conf", content, notify=notify,
                                 mode=0o640 if i == 2 else 0o644))
    return HostPlan(host.name, tuple(files) + tuple(extra))


def converge(targets, plans, **kw):
    out = io.StringIO()
    results = engine.converge(targets, plans, printer=executor.Printer(out), **kw)
    return results, out.getvalue()


def main_pids(targets):
    return {t.name: ssh(t, "systemctl show -p MainPID --value bmms-labtest").strip()
            for t in targets}


def reloads(target):
    return int(ssh(target, "cat /run/bmms-labtest.reloads 2>/dev/null | wc -l").strip())


@pytest.fixture(scope="module")
def plans(lab_env):
    return {h.name: plan_for(h) for h in lab_env.hosts}


def clean(targets):
    for t in targets:
        ssh(t, "systemctl disable --now bmms-labtest 2>/dev/null; rm -rf /etc/bmms-labtest "
               "/etc/systemd/system/bmms-labtest.service /run/bmms-labtest.reloads; "
               "systemctl daemon-reload; userdel -r deployer 2>/dev/null; "
               "rm -f /etc/sudoers.d/deployer; true")


@pytest.fixture(scope="module")
def first_run(targets, plans):
    clean(targets)     # even after an aborted earlier run
    yield converge(targets, plans)
    clean(targets)     # leave the hosts as the deploy tests expect them


def by_name(targets, name):
    return next(t for t in targets if t.name == name)


def test_first_converge_writes_every_file_and_starts_the_service(first_run, targets, plans):
    results, output = first_run
    assert all(r.status == "changed" and len(r.changed) == 10 for r in results.values()), results
    for r in results.values():
        assert r.handlers == ["daemon-reload:systemd", "restart:bmms-labtest"]  # once each
    for t in targets:
        sums = ssh(t, "sha256sum /etc/bmms-labtest/*.conf /etc/systemd/system/bmms-labtest.service")
        for f in plans[t.name].files:
            assert f"{f.sha256}  {f.path}" in sums
        assert ssh(t, "stat -c %a /etc/bmms-labtest/f2.conf").strip() == "640"
        assert ssh(t, "systemctl is-active bmms-labtest").strip() == "active"
    # every line prefixed by its host; a summary
    assert "[app3] create /etc/bmms-labtest/f4.conf" in output
    assert "10 hosts: 0 ok, 10 changed, 0 failed" in executor.summary(results)


def test_second_converge_changes_nothing_in_one_round_trip(first_run, targets, plans):
    pids = main_pids(targets)
    before = {t.name: reloads(t) for t in targets}
    results, _ = converge(targets, plans)
    assert all(r.status == "ok" and not r.changed and not r.handlers for r in results.values())
    assert all(r.round_trips == 1 for r in results.values()), [r.round_trips for r in results.values()]
    assert main_pids(targets) == pids
    assert {t.name: reloads(t) for t in targets} == before


def test_one_template_change_reloads_only_that_host(first_run, targets, plans, lab_env):
    pids = main_pids(targets)
    before = {t.name: reloads(t) for t in targets}
    plans = dict(plans, app2=plan_for(lab_env.host("app2"), {0: "v2"}))
    results, _ = converge(targets, plans)
    changed = {n: r for n, r in results.items() if r.status != "ok"}
    assert list(changed) == ["app2"]
    assert changed["app2"].changed == ["/etc/bmms-labtest/f0.conf"]
    assert changed["app2"].handlers == ["reload:bmms-labtest"]
    assert main_pids(targets) == pids                        # reloaded, not restarted
    after = {t.name: reloads(t) for t in targets}
    assert after["app2"] == before["app2"] + 1
    assert {n: v for n, v in after.items() if n != "app2"} == \
        {n: v for n, v in before.items() if n != "app2"}
    # converge back so later tests start from the base plan
    converge([by_name(targets, "app2")], {"app2": plan_for(lab_env.host("app2"))})


def test_diff_shows_change_masks_secrets_and_writes_nothing(first_run, targets, lab_env):
    app3 = by_name(targets, "app3")
    secret = "s3cr3t-value-never-shown"
    plan = plan_for(lab_env.host("app3"), {3: "v-new"}, extra=(
        ManagedFile("/etc/bmms-labtest/secret.env", f"PASSWORD={secret}\n".encode(), mode=0o600,
                    secret=True),))
    before = ssh(app3, "sha256sum /etc/bmms-labtest/f3.conf")
    results, output = converge([app3], {"app3": plan}, dry_run=True, diff=True,
                               mask=lambda text: text.replace(secret, "********"))
    assert "[app3] -value = v1" in output and "[app3] +value = v-new" in output
    assert "[app3] +PASSWORD=********" in output and secret not in output
    assert results["app3"].status == "changed" and results["app3"].handlers == []
    assert ssh(app3, "sha256sum /etc/bmms-labtest/f3.conf") == before
    assert ssh(app3, "test -e /etc/bmms-labtest/secret.env && echo yes || echo no").strip() == "no"


def test_mode_drift_is_repaired_without_a_restart(first_run, targets, plans):
    db1 = by_name(targets, "db1")
    pid = main_pids([db1])
    ssh(db1, "chmod 666 /etc/bmms-labtest/f5.conf")
    results, output = converge([db1], {"db1": plans["db1"]})
    assert results["db1"].changed == ["/etc/bmms-labtest/f5.conf"] and results["db1"].handlers == []
    assert ssh(db1, "stat -c %a /etc/bmms-labtest/f5.conf").strip() == "644"
    assert main_pids([db1]) == pid


def test_a_handler_owed_by_a_failed_run_is_done_by_the_next(first_run, targets, plans, lab_env):
    app4 = by_name(targets, "app4")
    ssh(app4, "touch /etc/bmms-labtest/fail-reload")
    before = reloads(app4)
    changed_plan = {"app4": plan_for(lab_env.host("app4"), {0: "v3"})}
    results, output = converge([app4], changed_plan)
    r = results["app4"]
    assert r.status == "failed" and isinstance(r.error, StepError)
    assert r.error.host == "app4" and r.error.step == "handler reload:bmms-labtest"
    assert "[app4] FAILED" in output
    ssh(app4, "rm /etc/bmms-labtest/fail-reload")
    results, output = converge([app4], changed_plan)      # no file differs any more...
    assert results["app4"].changed == []
    assert results["app4"].handlers == ["reload:bmms-labtest"]   # ...but the reload is still owed
    assert "handlers owed by an earlier run: reload:bmms-labtest" in output
    assert reloads(app4) == before + 1
    results, _ = converge([app4], changed_plan)
    assert results["app4"].status == "ok" and results["app4"].handlers == []
    converge([app4], {"app4": plans["app4"]})


def test_a_failed_check_installs_nothing(first_run, targets, plans):
    lb1 = by_name(targets, "lb1")
    bad = ManagedFile("/etc/bmms-labtest/f0.conf", b"broken\n", notify=(reload("bmms-labtest"),),
                      check="grep -q '^address' {path}")
    plan = HostPlan("lb1", (bad,) + plans["lb1"].files[2:])
    before = ssh(lb1, "cat /etc/bmms-labtest/f0.conf")
    results, _ = converge([lb1], {"lb1": plan})
    assert results["lb1"].status == "failed" and "check" in str(results["lb1"].error)
    assert ssh(lb1, "cat /etc/bmms-labtest/f0.conf") == before
    assert ssh(lb1, "ls -a /etc/bmms-labtest | grep -c bmms- || true").strip() == "0"  # no temp left
    # the handler stayed owed; converging the good plan runs it
    results, _ = converge([lb1], {"lb1": plans["lb1"]})
    assert results["lb1"].handlers == ["reload:bmms-labtest"]


def test_a_host_with_a_wrong_key_is_refused(lab, targets, tmp_path):
    lb1, app1 = by_name(targets, "lb1"), by_name(targets, "app1")
    lines = open(lb1.known_hosts_path).read().splitlines()
    app1_key = next(l for l in lines if l.startswith(app1.address + " ")).split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text("\n".join(f"{lb1.address} {app1_key}" if l.startswith(lb1.address + " ")
                                else l for l in lines) + "\n")
    t = dataclasses.replace(lb1, known_hosts=str(forged))
    with pytest.raises(HostKeyError) as exc:
        executor.Session(t).open()
    assert "HOST KEY MISMATCH" in str(exc.value) and "lb1" in str(exc.value)
    results, _ = converge([t], {"lb1": HostPlan("lb1", ())})
    assert results["lb1"].status == "failed" and isinstance(results["lb1"].error, HostKeyError)
    empty = tmp_path / "empty"; empty.write_text("")
    with pytest.raises(HostKeyError) as exc:
        executor.Session(dataclasses.replace(lb1, known_hosts=str(empty))).open()
    assert "is not in" in str(exc.value)


def test_trust_records_fingerprints_only_when_confirmed(lab, targets, tmp_path):
    kh = tmp_path / "known_hosts"
    ts = [dataclasses.replace(t, known_hosts=str(kh)) for t in targets[:3]]
    lines = executor.trust(ts, confirm=lambda q: False)
    assert all("not trusted" in l for l in lines) and not kh.exists()
    asked = []
    lines = executor.trust(ts, confirm=lambda q: asked.append(q) or True)
    assert len(asked) == 3 and all("SHA256:" in q for q in asked)
    with executor.Session(ts[0]) as s:
        assert s.exec("true")[0] == 0
    assert all("already trusted" in l for l in executor.trust(ts, confirm=lambda q: False))


def test_non_root_user_with_sudo(first_run, lab, targets, plans):
    db2 = by_name(targets, "db2")
    pub = (lab.key.with_suffix(".pub")).read_text()
    ssh(db2, "id deployer >/dev/null 2>&1 || useradd -m -s /bin/bash deployer; "
             "install -d -m 700 -o deployer -g deployer ~deployer/.ssh; "
             f"echo '{pub.strip()}' > ~deployer/.ssh/authorized_keys; "
             "chown deployer: ~deployer/.ssh/authorized_keys; "
             "echo 'deployer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deployer")
    t = dataclasses.replace(db2, user="deployer")
    with executor.Session(t) as s:
        assert s.run("id -un", "whoami").strip() == "root"     # commands run through sudo -n
    plan = HostPlan("db2", plans["db2"].files + (
        ManagedFile("/etc/bmms-labtest/by-sudo.conf", b"x\n", mode=0o600),))
    results, _ = converge([t], {"db2": plan})
    assert results["db2"].changed == ["/etc/bmms-labtest/by-sudo.conf"]
    assert ssh(db2, "stat -c '%U %a' /etc/bmms-labtest/by-sudo.conf").strip() == "root 600"


CRASHY = """\
[Unit]
Description=bmms-fab engine test: crash-loops until its config exists
[Service]
ExecStart=/bin/sh -c 'test -f /etc/bmms-labtest/crashy.conf || exit 1; exec sleep infinity'
Restart=always
RestartSec=100ms
"""


def test_restart_handler_recovers_a_unit_that_hit_its_start_limit(first_run, targets):
    """Like a Debian package's service crash-looping on its default config at install: the
    converge that brings the right config must still be able to restart it."""
    db2 = by_name(targets, "db2")
    ssh(db2, f"cat > /etc/systemd/system/bmms-crashy.service <<'X'\n{CRASHY}X\n"
             "systemctl daemon-reload; systemctl start bmms-crashy || true; sleep 3")
    state = ssh(db2, "systemctl show -p ActiveState -p NRestarts bmms-crashy")
    assert "ActiveState=failed" in state and int(state.split("NRestarts=")[1].split()[0]) >= 4
    # a plain `systemctl restart` is refused now (start limit); the handler must still work
    plan = HostPlan("db2", (ManagedFile("/etc/bmms-labtest/crashy.conf", b"ok\n",
                                        notify=(restart("bmms-crashy"),)),))
    try:
        results, _ = converge([db2], {"db2": plan})
        assert results["db2"].error is None, results["db2"].error
        assert ssh(db2, "systemctl is-active bmms-crashy").strip() == "active"
    finally:
        ssh(db2, "systemctl stop bmms-crashy; rm -f /etc/systemd/system/bmms-crashy.service "
                 "/etc/bmms-labtest/crashy.conf; systemctl daemon-reload; systemctl reset-failed")
