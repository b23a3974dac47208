"""The control plane (`orch serve`): the HTTP service, the control loop, the pure reconcile
rules (Ray's record of an attempt -> transitions), the launcher and the job store.

May import ``core``, ``load`` and ``adapters``; never ``runners``, ``client`` or ``cli``.
"""
