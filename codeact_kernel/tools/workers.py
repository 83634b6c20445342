"""The tool server's worker threads: daemon threads started on demand."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable


class Workers:
    """Daemon worker threads, started on demand.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so
    one hung tool would keep the whole CLI from exiting after Ctrl-C.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.idle = 0
        self.queued = 0  # submitted, not yet taken by a worker
        self.stopping = False
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            # Compare with the jobs still queued, not just zero: idle workers that have
            # not woken yet are already spoken for, and a call that waits for its
            # siblings (threads in the kernel) would wait for a worker that never comes.
            self.queued += 1
            if self.queued > self.idle and len(self.threads) < self.size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"codeact-tool-{len(self.threads)}")
                self.threads.append(thread)
                thread.start()
        self.jobs.put(job)

    def _work(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            job = self.jobs.get()
            if job is None:
                return
            with self.lock:
                self.idle -= 1
                self.queued -= 1
            if not self.stopping:
                job()

    def shutdown(self, timeout: float) -> None:
        """Stop idle workers; a worker stuck in a tool is left behind (it is a daemon)."""
        self.stopping = True
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
