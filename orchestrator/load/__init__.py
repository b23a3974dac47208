"""Files to core models, all YAML through one hardened reader (``reader``): the job spec, ``--set``
overrides, its file checks, cluster files, launcher and KubeRay configs, traces; problems in
users' words (``messages``) as ``SpecError``.

May import only ``core`` (and PyYAML, pydantic).
"""
