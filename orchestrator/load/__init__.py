"""Files to core models: the job spec, ``--set`` overrides, cluster files, launcher and KubeRay
configs, traces; their errors as ``SpecError``.

May import only ``core`` (and PyYAML, pydantic).
"""
