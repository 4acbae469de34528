"""Typed errors. Each one says where (file/line or host), which step, and why."""

from __future__ import annotations

from dataclasses import dataclass


class BmmsError(Exception):
    """Base of every error the tool raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where it is and what was expected."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.message}"


class InventoryError(BmmsError):
    """The inventory (hosts.yml) is invalid. Raised before any connection is opened."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid inventory ({len(problems)} problem(s)):\n{lines}")


class UsageError(BmmsError):
    """A task was called with bad arguments."""

    exit_code = 2


class SecretsError(BmmsError):
    """A secret is missing or the secrets file is unsafe. Never carries a secret value."""

    exit_code = 2


class RenderError(BmmsError):
    """A template could not be rendered for a host."""

    def __init__(self, host: str, template: str, cause: str):
        self.host, self.template, self.cause = host, template, cause
        super().__init__(f"{host}: render {template}: {cause}")


class StepError(BmmsError):
    """A step failed on a host: names the host, the step, the exit code and the end of stderr."""

    def __init__(self, host: str, step: str, cause: str, exit_code: int | None = None,
                 stderr_tail: str = ""):
        self.host, self.step, self.cause = host, step, cause
        self.remote_exit_code, self.stderr_tail = exit_code, stderr_tail
        msg = f"{host}: step '{step}' failed: {cause}"
        if exit_code is not None:
            msg += f" (exit {exit_code})"
        if stderr_tail:
            msg += "\n" + "\n".join(f"    | {l}" for l in stderr_tail.splitlines())
        super().__init__(msg)
