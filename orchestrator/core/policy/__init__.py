"""The queue policy: ``decide(state) -> Decision`` (order, quota, reservations, preemption,
wait reasons, sweep slots), the same for the control plane and the simulator.

Part of ``core``: imports only ``core`` and the standard library.
"""
