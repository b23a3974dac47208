"""The edges to the world outside: Ray's Jobs API and GCS, HTTP with the cluster token,
working-dir packages, the local cluster's processes (up/down) and where to find a cluster.

May import only ``core``.
"""
