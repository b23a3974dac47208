"""The pure core: job spec models and their string forms, the hardware catalog, snapshots, the
allocator and its scaling config, the queue policy, lifecycle and protocol names, node types,
autoscale and the simulator. Plain data in, decisions out.

May import only ``core`` and the standard library's pure parts: no Ray, no I/O, no clock, no os.environ.
"""
