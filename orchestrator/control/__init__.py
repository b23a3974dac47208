"""The control plane (`orch serve`): the HTTP service, the control loop, the pure reconcile
rules (Ray's record of an attempt -> transitions), the launcher, the job store, and the ETAs
(runtimes for the policy; the live queue's forecast, run beside the loop).

May import ``core``, ``load`` and ``adapters``; never ``runners``, ``client`` or ``cli``.
"""
