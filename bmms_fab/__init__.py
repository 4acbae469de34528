"""bmms-fab: put the BMMS platform onto Debian 12 hosts over SSH, keep it running, back it up."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
SYSTEMD_DIR = PROJECT_ROOT / "systemd"
