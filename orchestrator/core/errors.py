"""Errors a user can cause, each rendered by the CLI as one message and an exit code."""

from __future__ import annotations


class OrchError(Exception):
    """Base of orch's user-facing errors; ``exit_code`` follows SPEC.md section 3."""

    exit_code = 1


def message_lines(error: OrchError) -> list[str]:
    """``error`` as the lines users read: ``error: ...``, and one line per problem of a spec with several."""
    if isinstance(error, SpecError) and len(error.problems) > 1:
        return [f"error: {len(error.problems)} problems in {error.source or 'the spec'}:",
                *(f"  {problem}" for problem in error.problems)]
    return [f"error: {error}"]


class SpecError(OrchError):
    """The job spec (or a command's arguments) is invalid: exit 2.

    ``problems`` holds one line per error, each naming the file position,
    the field path and what to write instead; ``details``, where the loader
    knew them apart, the same problems as ``{file, line, column, field,
    message}`` (for `orch validate --json`).
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str | None = None,
                 details: list[dict] | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        self.details = details
        located = self.problems[0].startswith(f"{source}:") if source else True
        head = f"{source}: " if len(self.problems) == 1 and not located else ""
        super().__init__(head + "\n".join(self.problems))


class InfeasibleError(OrchError):
    """The job can never run on this cluster (exit 2 at submit, 1 from `orch plan`)."""

    exit_code = 2

    def __init__(self, job: str, reasons: list[str]):
        self.job = job
        self.reasons = reasons
        super().__init__(f"{job} cannot run on this cluster:\n  " + "\n  ".join(reasons))


class ClusterUnavailable(OrchError):
    """The cluster cannot be reached or started: exit 3."""

    exit_code = 3


class JobNotFound(OrchError):
    exit_code = 2

    def __init__(self, job: str):
        super().__init__(f"no job {job!r}; `orch list` shows the jobs")


class NotAvailable(OrchError):
    """What a command needs is not here: a program not installed, files a job has not written (exit 1)."""

    exit_code = 1
