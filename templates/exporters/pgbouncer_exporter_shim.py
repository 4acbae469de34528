# Managed by bmms-fab.
"""Run Debian 12's prometheus-pgbouncer-exporter (1.7) against PgBouncer 1.18.

The packaged exporter reads columns that PgBouncer >= 1.16 no longer reports in SHOW STATS
(`total_requests`...) and crashes with KeyError: spreaker/prometheus-pgbouncer-exporter#60, fix
proposed in #68 and not released. This shim leaves out, per collector, the columns the running
PgBouncer does not have, then runs the packaged exporter unchanged. Remove it once Debian ships a
fixed exporter.
"""

from prometheus_pgbouncer_exporter import cli, collectors

_collect = collectors.NamedColumnCollector.collect


def _collect_known_columns(self):
    rows = list(collectors.get_data_by_named_column(self.connection, self.query_parameter))
    if rows:
        self.metrics = {k: v for k, v in type(self).metrics.items() if k in rows[0]}
    return _collect(self)


collectors.NamedColumnCollector.collect = _collect_known_columns

if __name__ == "__main__":
    cli.main()
