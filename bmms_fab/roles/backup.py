"""The backup host: where `inv backup` stores dumps, snapshots and archives."""

from ..plan import ManagedFile
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    return [ManagedFile(
        "/etc/bmms/backup.conf",
        (f"# Managed by bmms-fab\nBACKUP_DIR={ctx.vars['backup_dir']}\n"
         f"RETENTION_DAYS={ctx.vars['backup_retention_days']}\n"
         f"MIN_KEEP={ctx.vars['backup_min_keep']}\n").encode())]
