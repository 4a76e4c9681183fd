#!/usr/bin/env python3
"""Samples CPU use for bench-compare.sh until killed: every INTERVAL seconds,
/proc/stat and each LABEL=PID's /proc/PID/stat and /proc/PID/task/*/stat,
appended to FILE as lines bench-report.py reads:

    T EPOCH <first line of /proc/stat>
    Q EPOCH LABEL <contents of /proc/PID/stat>
    P EPOCH LABEL <contents of /proc/PID/task/TID/stat>

    sample-cpu.py FILE INTERVAL LABEL=PID...

One process that never forks: a shell loop that runs `date` and `sleep`
each round starts processes several times a second, and on this 2-core
machine that alone moved a broker's open-loop p99 from 0.75 to 1.74 ms
(docs/bench.md), so the sampler must not disturb what it measures.
"""
import os
import sys
import time


def read_line(path):
    try:
        with open(path) as f:
            return f.readline().rstrip("\n")
    except OSError:
        return None


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: sample-cpu.py FILE INTERVAL LABEL=PID...")
    out_path, interval = sys.argv[1], float(sys.argv[2])
    targets = []
    for lp in sys.argv[3:]:
        label, _, pid = lp.partition("=")
        if pid:
            targets.append((label, pid))
    next_at = time.monotonic()
    with open(out_path, "a") as out:
        while True:
            now = "%.9f" % time.time()
            lines = []
            stat = read_line("/proc/stat")
            if stat is not None:
                lines.append(f"T {now} {stat}")
            for label, pid in targets:
                q = read_line(f"/proc/{pid}/stat")
                if q is None:
                    continue
                lines.append(f"Q {now} {label} {q}")
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                for tid in tids:
                    p = read_line(f"/proc/{pid}/task/{tid}/stat")
                    if p is not None:
                        lines.append(f"P {now} {label} {p}")
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
