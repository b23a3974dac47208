"""The control plane (`orch serve`): the HTTP service, the control loop, the job store.

May import ``core``, ``load`` and ``adapters``; never ``runners``, ``client`` or ``cli``.
"""
