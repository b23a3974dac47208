"""Free local ports for the Ray processes and the control plane orch starts on this machine."""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int) -> list[int]:
    """``count`` free ports on 127.0.0.1, none handed out before by this process. Ports picked
    one socket at a time repeat once the socket closes, and Ray refuses to start a node whose
    components were given the same port (make soak met it: the head never came up); a port
    given to a node that has not bound it yet must not go to the next one either."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:  # every socket stays bound, so each try gets a new port
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in _GIVEN and port not in ports:
                ports.append(port)
        _GIVEN.update(ports)
        return ports


_GIVEN: set[int] = set()
