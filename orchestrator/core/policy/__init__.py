"""The queue policy: ``decide(state) -> Decision`` (order, quota, reservations, backfill,
preemption, hardware by expected finish, wait reasons, sweep slots), the same for the control
plane, the simulator and the ETAs' forecast.

Part of ``core``: imports only ``core`` and the standard library.
"""
