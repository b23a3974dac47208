"""The `orch` command: its commands (typer) and how they render (rich); ``main`` is the console script.

May import ``client``, ``core`` and ``load``.
"""

from orchestrator.cli.commands import main

__all__ = ["main"]
