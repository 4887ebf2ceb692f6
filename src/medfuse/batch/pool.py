"""``batch --workers N``: whole pairs in N worker processes, each with its own engine.

Why whole pairs per worker rather than "I/O in workers, the network in the main process":
on CPU the network is 90% of a pair's time (docs/performance.md: a 1 mm head spends 18 of
19.5 s in it) and torch already spreads it over the cores, so moving only read, resample
and write off the main process could win at most their ~10%, at the price of shipping every
slab between processes. N single-threaded workers instead keep every core busy through
the serial stages too (scipy resampling, gzip, PNG encoding are single-threaded) and scale
by whole studies with nothing shared; the same split serves Ray actors and GPUs. Measured
on 2 cores in docs/performance.md. Outputs are byte-identical to a serial run: every worker
calls the one per-pair function (:func:`medfuse.batch.task.run_task`), and the CPU engine's
results do not depend on its thread count (tested).

Memory is bounded: each worker holds one study at a time and at most ``2 * N`` small
task descriptions are queued, and N itself is capped (:func:`worker_count`) by the pairs
to fuse and by the memory available (:data:`WORKER_MEMORY` per worker), the cap said in
one line. Workers die with their parent: on Linux each asks the kernel for SIGTERM when
the process that started it ends (``PR_SET_PDEATHSIG``), elsewhere a thread watches the
parent, so a SIGKILL of ``medfuse batch`` alone leaves no orphan holding memory. A worker that dies (killed, out of memory) fails only the
pair it was fusing: the pairs that were in flight with it are re-run one at a time in a
fresh pool to find which one it was, and the rest go on.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from medfuse.batch.task import (
    OnDone,
    PairOutcome,
    PairTask,
    available_cpus,
    failed_now,
    limit_torch_threads,
    run_task,
)
from medfuse.errors import UsageError

if TYPE_CHECKING:
    from medfuse.engine import Engine

#: Task descriptions queued per worker beyond the one it is fusing (keeps workers fed
#: without holding more than one study each in memory).
QUEUED_PER_WORKER = 1
#: Memory one worker may take (a GeSeNet CPU engine, torch, one head study and its
#: output: about 300 MB measured, with room for a larger study).
WORKER_MEMORY = 768 << 20
#: Seconds between looks at the parent where the kernel cannot be asked to signal.
PARENT_POLL_S = 1.0
PR_SET_PDEATHSIG = 1
WORKER_DIED = ("the worker process fusing this pair died (killed, or out of memory); "
               "the other pairs went on")


def check_picklable(engine_loader: Callable[[], Any], where: str) -> None:
    """Refuse, as a usage error, an engine loader that cannot be sent to ``where``."""
    try:
        pickle.dumps(engine_loader)
    except Exception as exc:  # pickling raises many types
        raise UsageError(f"{where} needs an engine loader that can be pickled (an EngineSpec, "
                         f"a class or a module-level function); got {engine_loader!r}: "
                         f"{exc}") from None


# -- in the worker ------------------------------------------------------------------------

_loader: Callable[[], Engine] | None = None
_engine: Engine | None = None
_threads = 1


def die_with_parent(parent: int) -> None:
    """End this process (SIGTERM, so staged files are removed) when ``parent`` ends:
    ``prctl(PR_SET_PDEATHSIG)`` on Linux, else a daemon thread that looks every
    :data:`PARENT_POLL_S` seconds. A parent already gone ends it at once. The kernel
    signals when the *thread* that started the worker ends, so a pool is always driven
    from one thread that outlives it (:func:`run_pool` starts and drains its pools in the
    caller's thread)."""
    import signal

    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # it died before the request above was made
        os.kill(os.getpid(), signal.SIGTERM)
    if armed:
        return
    import threading

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="medfuse-parent-watch", daemon=True).start()


def _init_worker(loader: Callable[[], Engine], threads: int, parent: int | None = None) -> None:
    """Worker start-up: bound to its parent's life (:func:`die_with_parent`); the process
    is medfuse's own, so it takes the measured process tuning (passive OpenMP waiting,
    allocator) and its share of the cores. Threads go through the environment, read when
    torch loads (with the engine, not before: a stand-in engine never pays for importing
    torch)."""
    global _loader, _threads
    from medfuse.engine.runtime import tune_process

    if parent is not None:
        die_with_parent(parent)

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    tune_process()
    _loader, _threads = loader, threads


def _get_engine() -> Engine:
    global _engine
    if _engine is None:
        assert _loader is not None
        _engine = _loader()
        limit_torch_threads(_threads)
    return _engine


def _work(task: PairTask) -> PairOutcome:
    return run_task(task, _get_engine)


# -- in the driver ------------------------------------------------------------------------


def _drain(
    indices: list[int], tasks: list[PairTask], on_done: OnDone, size: int,
    loader: Callable[[], Engine], threads: int,
) -> tuple[list[int], list[int]]:
    """Run ``indices`` in a pool of ``size`` workers; returns the tasks lost to a broken
    pool (in flight when a worker died) and those never started."""
    import multiprocessing

    todo = deque(indices)
    ctx = multiprocessing.get_context("spawn")  # fork after torch/OpenMP start is unsafe
    with ProcessPoolExecutor(size, mp_context=ctx, initializer=_init_worker,
                             initargs=(loader, threads, os.getpid())) as pool:
        pending: dict[Future[PairOutcome], int] = {}

        def feed() -> None:
            while todo and len(pending) < size * (1 + QUEUED_PER_WORKER):
                i = todo.popleft()
                pending[pool.submit(_work, tasks[i])] = i

        feed()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            lost: list[int] = []
            for fut in done:
                i = pending.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    lost.append(i)
                    continue
                on_done(i, outcome)
            if lost:
                lost += list(pending.values())
                pending.clear()
                return sorted(lost), list(todo)
            feed()
    return [], []


def available_memory() -> int | None:
    """Bytes of memory available to new processes (``MemAvailable``, or the cgroup's limit
    less its use when that is smaller); None where neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as a, open("/sys/fs/cgroup/memory.current") as b:
            limit, used = a.read().strip(), b.read().strip()
        if limit != "max":
            found.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def worker_count(requested: int, pairs: int, memory: int | None,
                 per_worker: int = WORKER_MEMORY) -> tuple[int, str]:
    """How many workers to start for ``requested`` and ``pairs``: no more than there are
    pairs, and no more than ``memory`` holds at ``per_worker`` each (at least one). Returns
    the count and, when it is below ``requested``, the one line that says why."""
    count, why = max(1, requested), ""
    if pairs < count:
        count, why = max(1, pairs), f"one per pair to fuse ({pairs})"
    if memory is not None:
        fits = max(1, memory // per_worker)
        if fits < count:
            count = fits
            why = (f"{memory / 2**30:.1f} GiB of memory available holds {fits} at "
                   f"{per_worker / 2**20:.0f} MiB each")
    note = f"--workers {requested}: starting {count} ({why})" if count < requested else ""
    return count, note


def run_pool(
    tasks: list[PairTask],
    engine_loader: Callable[[], Engine],
    on_done: OnDone,
    workers: int,
    threads: int | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Fuse ``tasks`` in up to ``workers`` spawned processes (capped by
    :func:`worker_count`, the cap passed to ``say``); ``on_done(index, outcome)`` runs in
    this process as each finishes (in finishing order). ``threads``: torch threads per
    worker (default: this process's CPUs shared out)."""
    check_picklable(engine_loader, "--workers")
    size, note = worker_count(workers, len(tasks), available_memory())
    if note and say is not None:
        say(note)
    threads = threads or max(1, available_cpus() // size)
    rest = list(range(len(tasks)))
    while rest:
        suspects, rest = _drain(rest, tasks, on_done, size, engine_loader, threads)
        for i in suspects:  # alone in a pool: a death now names its pair
            if _drain([i], tasks, on_done, 1, engine_loader, threads)[0]:
                on_done(i, failed_now(WORKER_DIED))


__all__ = ["WORKER_DIED", "WORKER_MEMORY", "available_memory", "check_picklable",
           "die_with_parent", "run_pool", "worker_count"]
