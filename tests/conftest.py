import os
import shutil
from pathlib import Path

import pytest

from bmms_fab import inventory
from bmms_fab.secrets import SECRETS, Secrets, generate_value

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def inv():
    return inventory.load(ROOT / "hosts.yml")


@pytest.fixture(scope="session")
def fake_secrets():
    """Random values for every secret (rendering needs them; nothing here is a real secret)."""
    return Secrets({n: generate_value(n) for n in SECRETS}, "test")


def need_tool(*names: str) -> None:
    """Skip on a developer machine without the tool; fail in CI, where .ci/run installs it."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        msg = f"needs {', '.join(missing)} (installed by .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root")
        pytest.skip("needs root")
