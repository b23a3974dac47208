"""A Ray Job driver that stands in its unpacked working_dir until the file GO exists, then
reads a file of that folder by a relative path: the folder must still be where it stood.
It reports to the file REPORT (a driver off the head node logs where Ray's log reader on
a simulated node does not look)."""

import os
import sys
import time

go, report = sys.argv[1], sys.argv[2]
with open(report, "w") as handle:
    handle.write(f"standing in {os.getcwd()}\n")
deadline = time.monotonic() + 180
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.2)
with open("payload.txt") as payload, open(report, "a") as handle:
    handle.write(f"read {payload.read().strip()}\n")
