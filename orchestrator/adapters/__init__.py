"""The edges to the world outside: Ray's Jobs API and GCS, HTTP with the cluster token,
working-dir packages, the local cluster's processes (up/down), where to find a cluster, and the
token-adding proxy of `orch dashboard`.

May import only ``core``.
"""
