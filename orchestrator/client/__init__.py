"""The library API (plan, submit, dry-run, status, logs, results, up/down) and the control-plane client.

May import ``core``, ``load`` and ``adapters``; never ``control`` or ``runners``.
"""
