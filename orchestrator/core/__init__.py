"""The pure core: job spec models, the hardware catalog, snapshots, the allocator, the queue policy,
lifecycle and protocol names, autoscale and the simulator. Plain data in, decisions out.

May import only ``core`` and the standard library's pure parts: no Ray, no I/O, no clock, no os.environ.
"""
