"""``batch --backend ray``: the pairs over a Ray cluster, one loaded engine per actor.

Why actors rather than Ray tasks or a Ray dataset: loading an engine costs seconds
(import torch, read and fold the weights, and on CUDA the half-precision check), so each
actor loads it once and fuses pair after pair; a pair is a few file paths, so the pair
list needs none of a dataset's block machinery. Each actor asks for one CPU and, when the
cluster has GPUs, ``gpus_per_worker`` of a GPU (Ray's ``num_gpus``; 0.5 puts two actors on
a GPU), so Ray places actors and the engine's ``device="auto"`` finds the GPU Ray assigned.

The driver alone decides what to fuse and writes the ledger (:mod:`medfuse.batch.driver`); actors
only call the same per-pair function as every other backend
(:func:`medfuse.batch.task.run_task`),
so outputs are byte-identical to a serial run, and a pair's failure is its own row. An
actor that dies fails the pair it was running; the pairs queued behind it go to a
replacement actor. Outputs are written by the actors, so on a multi-node cluster OUT_DIR
must be a filesystem every node mounts at the same path (docs/scale.md).

An ``--address`` is checked before Ray is asked to connect (:func:`check_address`): the
host must resolve and its port accept a TCP connection within :data:`CONNECT_TIMEOUT_S`
seconds, else one line names the address. ``ray.init`` itself retries an unreachable
cluster for minutes, printing its log lines, and does not give way to SIGTERM.

Ray is an optional extra (``pip install "medfuse[ray]"``); without it ``--backend ray`` is
a one-line usage error.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
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
from medfuse.errors import InputError, UsageError, one_line

if TYPE_CHECKING:
    from medfuse.engine import Engine

#: Calls queued per actor beyond the one it runs (keeps actors fed, bounds memory).
QUEUED_PER_ACTOR = 1
ACTOR_DIED = "the Ray actor fusing this pair died (node lost, killed, or out of memory)"
RAY_MISSING = ('--backend ray needs Ray, which is not installed: pip install "medfuse[ray]" '
               '(or pip install "ray[default]>=2.9")')


#: Seconds allowed for resolving a cluster address and opening a TCP connection to it.
CONNECT_TIMEOUT_S = 5.0


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address (``host:port``, ``ray://host:port``, ``[v6]:port``);
    None for ``auto`` / ``local``, which Ray resolves itself. A malformed one is a usage
    error naming it."""
    text = address.strip()
    if text.lower() in ("auto", "local"):
        return None
    rest = text.split("://", 1)[1] if "://" in text else text
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT, "
                         "or auto)")
    return host, int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within about ``timeout`` seconds, a cluster address whose host does not
    resolve or whose port takes no connection: one line naming the address. Resolution
    runs in a daemon thread, so a resolver that hangs cannot hold the run past the bound."""
    import socket
    import threading

    where = split_address(address)
    if where is None:
        return
    host, port = where
    box: list[BaseException | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            box.append(None)
        except (OSError, UnicodeError, ValueError) as exc:
            box.append(exc)

    t = threading.Thread(target=attempt, name="medfuse-ray-address", daemon=True)
    t.start()
    t.join(timeout + 1.0)
    if not box:
        raise InputError(f"cannot reach the Ray cluster at {address}: no answer within "
                         f"{timeout:g} s")
    exc = box[0]
    if exc is not None:
        reason = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        if isinstance(exc, socket.gaierror):
            reason = f"host {host} does not resolve ({reason})"
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise InputError(f"cannot reach the Ray cluster at {address}: {reason}")


def import_ray() -> Any:
    """The ``ray`` module, or a one-line usage error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


class FuseActor:
    """One engine, loaded on first use, fusing the pairs sent to it with ``threads`` torch
    threads (the CPUs Ray gave the actor)."""

    def __init__(self, engine_loader: Callable[[], Engine], threads: int = 1) -> None:
        self.loader = engine_loader
        self.threads = threads
        self.engine: Engine | None = None

    def _get_engine(self) -> Engine:
        if self.engine is None:
            self.engine = self.loader()
            limit_torch_threads(self.threads)
        return self.engine

    def run(self, task: PairTask) -> PairOutcome:
        return run_task(task, self._get_engine)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at ``address``, or start a local instance with ``num_cpus``
    (default: this process's CPUs). Returns True when this call started or connected (so
    the caller shuts it down), False when Ray was already initialised by the caller."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    import medfuse

    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        check_address(address)
        ray.init(address=address, **quiet)
    else:
        # Workers of a local instance import medfuse from where this process does (a source
        # checkout run with PYTHONPATH=src works too).
        root = str(Path(medfuse.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=num_cpus or available_cpus(),
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
    return True


def plan_actors(resources: dict[str, float], workers: int | None,
                gpus_per_worker: float | None) -> tuple[int, float]:
    """How many actors and how much of a GPU each: one per GPU (or per ``gpus_per_worker``
    share) when the cluster has GPUs, else one per CPU; ``workers`` overrides the count."""
    gpus = float(resources.get("GPU", 0.0))
    share = gpus_per_worker if gpus_per_worker is not None else (1.0 if gpus else 0.0)
    if share < 0:
        raise UsageError(f"--gpus-per-worker {share}: must be 0 or more")
    if share and not gpus:
        raise UsageError(f"--gpus-per-worker {share}: the Ray cluster has no GPU")
    if workers is None:
        workers = int(gpus // share) if share else int(resources.get("CPU", 1))
    return max(1, workers), share


def run_ray(
    tasks: list[PairTask],
    engine_loader: Callable[[], Engine],
    on_done: OnDone,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    num_cpus: int | None = None,
) -> None:
    """Fuse ``tasks`` on Ray actors; ``on_done(index, outcome)`` runs in this process as
    each finishes. Starts (and afterwards stops) a local instance unless Ray is already
    initialised or ``address`` names a cluster."""
    ray = import_ray()
    started = start_ray(address, num_cpus)
    actors: list[Any] = []
    try:
        count, share = plan_actors(ray.cluster_resources(), workers, gpus_per_worker)
        actor_class = ray.remote(num_cpus=1, num_gpus=share, max_restarts=0)(FuseActor)

        def new_actor() -> Any:
            actor = actor_class.remote(engine_loader)
            actors.append(actor)
            return actor

        slots: deque[Any] = deque()
        for _ in range(min(count, len(tasks))):
            a = new_actor()
            slots.extend([a] * (1 + QUEUED_PER_ACTOR))
        todo = deque(range(len(tasks)))
        pending: dict[Any, tuple[int, Any, int]] = {}  # ref -> (task, actor, order sent)
        sent = 0

        def feed() -> None:
            nonlocal sent
            while todo and slots:
                actor, i = slots.popleft(), todo.popleft()
                pending[actor.run.remote(tasks[i])] = (i, actor, sent)
                sent += 1

        feed()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, actor, _order = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayActorError:
                # The actor ran its calls in the order sent: the earliest is the one it died
                # on, the later ones never started and go to a replacement.
                mine = sorted([(o, r, j) for r, (j, a, o) in pending.items() if a is actor]
                              + [(_order, ready[0], i)], key=lambda t: t[0])
                for _, r, _j in mine:
                    pending.pop(r, None)
                for _, _r, j in reversed(mine[1:]):
                    todo.appendleft(j)
                i = mine[0][2]
                while actor in slots:
                    slots.remove(actor)
                outcome = failed_now(ACTOR_DIED)
                slots.extend([new_actor()] * (1 + QUEUED_PER_ACTOR))
            except ray.exceptions.RayTaskError as exc:  # run_task catches; this is a surprise
                outcome = failed_now(one_line(exc.cause or exc))
                slots.append(actor)
            else:
                slots.append(actor)
            on_done(i, outcome)
            feed()
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        if started:
            ray.shutdown()


__all__ = ["ACTOR_DIED", "CONNECT_TIMEOUT_S", "RAY_MISSING", "FuseActor", "check_address",
           "import_ray", "plan_actors", "run_ray", "split_address", "start_ray"]
