"""A job's driver inside its Ray Job (``python -m orchestrator.runners.entry``) and the runners it
builds: train, tune, predict, with their framework specifics.

May import ``core``, ``load``, ``adapters`` and ``orchestrator.loop``; never ``control``, ``client`` or ``cli``.
"""
