"""Peak resident memory of this process over a block, sampled every 2 ms (the benchmarks' memory probe).

    from rss_sampler import RssSampler, rss_mib     # the benchmarks run as scripts: benchmarks/ is on sys.path
    with RssSampler() as s:
        ...
    s.peak                                           # MiB
"""
from __future__ import annotations

import os
import threading
import time


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.002)

    def __enter__(self):
        self.peak = rss_mib()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
