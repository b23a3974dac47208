"""The driver's side of ``core.events``: one ``::orch:: {json}`` line in the job's log per event."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrator.core.events import MARK


def emit(event: str, **fields: Any) -> None:
    record = {"event": event, "at": time.time(), **fields}
    print(f"{MARK} {json.dumps(record, default=str)}", flush=True)
