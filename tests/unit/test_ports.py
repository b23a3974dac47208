"""Ports for the processes orch starts: Ray refuses a node whose components share a port, and
the kernel hands a closed socket's port out again (make soak met it: the head never came up)."""

from __future__ import annotations

import itertools

from orchestrator.adapters import ports


class Kernel:
    """Hands out ports as a kernel may: the same one again once its socket is closed."""

    def __init__(self, handed):
        self.handed = iter(handed)

    def socket(self):
        kernel = self

        class Socket:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def bind(self, address):
                self.port = next(kernel.handed)

            def getsockname(self):
                return ("127.0.0.1", self.port)

        return Socket()


def test_a_port_handed_out_again_is_skipped_within_a_call_and_across_calls(monkeypatch):
    monkeypatch.setattr(ports, "_GIVEN", set())
    monkeypatch.setattr(ports.socket, "socket", Kernel([40001, 40001, 40002, 40001, 40002, 40003, 40004]).socket)
    assert ports.free_ports(2) == [40001, 40002]
    assert ports.free_ports(2) == [40003, 40004]


def test_real_ports_are_distinct_over_many_calls():
    got = list(itertools.chain.from_iterable(ports.free_ports(4) for _ in range(100)))
    assert len(set(got)) == len(got) == 400
