"""Fault injection for ``medfuse batch``: kill it at random moments and check that nothing is
ever lost, corrupt or half-written.

What it does (all seeded, so a run can be repeated exactly):

1. builds a dataset of PAIRS phantom pairs (64x64 PNG, ``MRI/`` + ``PET/``), about
   BAD_FRACTION of them broken in assorted ways (truncated, flipped byte, empty, text,
   colour MRI, mismatched size, decompression bomb);
2. runs ``medfuse batch`` once, serially and undisturbed: the reference;
3. runs it again into a fresh folder, SIGKILLing it KILLS times at random moments, each
   time restarting with ``--skip-existing`` (or ``--resume``: RESTART), until a run
   finishes by itself;
4. compares: every good pair's output must exist and be byte-identical to the reference,
   no bad pair may have an output, no file may be partial or undecodable, no file may be
   extra; staged files (``.medfuse-*``) are counted where they are left;
5. optionally (TERMS > 0) does the same with SIGTERM, after which no staged file may
   remain at all (medfuse removes them on SIGTERM);
6. reports peak RSS of the reference run over all pairs and over a quarter of them (flat
   memory: the two should be close);
7. with ``--scenarios`` (default all), three more faults, each followed by ``--resume``
   until done, after which the output tree must equal the reference: every file
   byte-identical except provenance records, which must be equal once their times (and
   the output folder's name, and the ``force`` a resume sets) are left out; no file extra,
   none missing, nothing staged:

   * ``main-kill``: ``batch --workers 2`` with only its main process SIGKILLed; the workers
     and the resource tracker must be gone 10 s later (no orphan);
   * ``group-kill``: the whole process group SIGKILLed at once;
   * ``disk-full``: the output folder on a size-limited tmpfs (as root, where ``mount``
     works) that fills half-way through, then grown and resumed; elsewhere a file size
     limit (``RLIMIT_FSIZE``) stands in for the full disk.

Every child imports medfuse from a copy of ``src/`` taken at the start, so edits to the
working tree during a long run cannot make the reference and the faulty runs differ.

The engine is the real GeSeNet with seeded random weights (``--engine weights``, default)
or a stand-in that averages the two inputs (``--engine mean``, no torch: fast).

    python benchmarks/fault_injection.py                      # 300 pairs, 5 kills
    python benchmarks/fault_injection.py --pairs 40 --kills 3 --engine mean --json r.json

Exit status 0 when nothing was lost, corrupt, partial or extra (and, with TERMS, no staged
file survived a SIGTERM); 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGING = ".medfuse-"

#: The child process: medfuse's CLI, with the averaging stand-in engine when asked for.
CHILD = """
import os, sys
engine = os.environ.get("FAULT_ENGINE", "weights")
from medfuse.cli import app
if engine == "mean":
    from medfuse.cli.options import injected_engine
    from fault_engine import MeanEngine

    with injected_engine(MeanEngine):
        app(prog_name="medfuse")
else:
    app(prog_name="medfuse")
"""

#: The stand-in engine, as a module beside the source snapshot: worker processes
#: (``--workers``) unpickle it by name, which a class defined in ``-c`` code cannot offer.
ENGINE_MODULE = """
import numpy as np


class MeanEngine:
    device = "cpu"
    weights_path = None
    weights_sha256 = None
    batch_size = 8

    def fuse_luminance(self, mri, other, with_masks=False):
        return ((mri + other) / 2).astype(np.float32), None, None
"""

BAD_KINDS = ("truncated", "flipped-byte", "empty", "text", "colour-mri", "size-mismatch",
             "bomb-header")


@dataclass
class Run:
    """One child process: how it ended and what it cost."""

    exit: int
    seconds: float
    max_rss_mib: float
    killed: bool = False


@dataclass
class Report:
    pairs: int
    good: int
    bad: int
    engine: str
    seed: int
    restart: str
    kills_requested: int
    terms_requested: int
    reference_seconds: float = 0.0
    reference_exit: int = 0
    peak_rss_mib_all_pairs: float = 0.0
    peak_rss_mib_quarter: float = 0.0
    kills: int = 0
    restarts: int = 0
    faulty_seconds: float = 0.0
    lost: int = 0
    corrupt: int = 0
    partial: int = 0
    extra: int = 0
    bad_written: int = 0
    records_missing: int = 0
    records_broken: int = 0
    staging_left_after_kills: int = 0
    staging_left_at_end: int = 0
    terms: int = 0
    staging_left_after_terms: int = 0
    runs: list[Run] = field(default_factory=list)
    scenarios: list[dict] = field(default_factory=list)  # type: ignore[type-arg]

    @property
    def ok(self) -> bool:
        """Nothing lost, corrupt, partial or extra, no staged file after a SIGTERM; with
        --resume also every provenance record present and no staged leftover at the end
        (--skip-existing only looks at the images, so it cannot promise those); every
        scenario's tree equal to the reference and no orphan."""
        core = not (self.lost or self.corrupt or self.partial or self.extra or self.bad_written
                    or self.records_broken or self.staging_left_after_terms)
        core = core and all(sc["ok"] for sc in self.scenarios)
        if self.restart == "resume":
            return core and not (self.records_missing or self.staging_left_at_end)
        return core


# ---------------------------------------------------------------------------- dataset


def build_dataset(folder: Path, n: int, bad_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``folder/MRI`` and ``folder/PET`` with n phantom pairs; returns (good, bad) names."""
    import numpy as np

    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom

    rng = random.Random(seed)
    n_bad = max(1, round(n * bad_fraction)) if bad_fraction > 0 else 0
    bad = set(rng.sample(range(n), n_bad))
    (folder / "MRI").mkdir(parents=True)
    (folder / "PET").mkdir()
    good_names, bad_names = [], []
    for i in range(n):
        name = f"{i:04d}"
        mri, pet = brain_phantom(64, seed=i)
        mri_path = write_image(folder / "MRI" / f"{name}.png", mri)
        write_image(folder / "PET" / f"{name}.png", pet)
        if i not in bad:
            good_names.append(name)
            continue
        bad_names.append(name)
        kind = BAD_KINDS[len(bad_names) % len(BAD_KINDS)]
        data = mri_path.read_bytes()
        if kind == "truncated":
            mri_path.write_bytes(data[: len(data) // 2])
        elif kind == "flipped-byte":
            b = bytearray(data)
            b[len(b) // 2] ^= 0x55
            mri_path.write_bytes(bytes(b))
        elif kind == "empty":
            mri_path.write_bytes(b"")
        elif kind == "text":
            mri_path.write_text("not an image\n")
        elif kind == "colour-mri":
            write_image(mri_path, pet, force=True)
        elif kind == "size-mismatch":
            write_image(mri_path, np.asarray(mri[:48, :48]), force=True)
        else:  # a PNG header declaring 100000 x 100000 pixels
            import struct
            import zlib

            def chunk(kind_: bytes, payload: bytes) -> bytes:
                return (struct.pack(">I", len(payload)) + kind_ + payload
                        + struct.pack(">I", zlib.crc32(kind_ + payload) & 0xFFFFFFFF))

            mri_path.write_bytes(b"\x89PNG\r\n\x1a\n"
                                 + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
                                 + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))
    return good_names, bad_names


# ---------------------------------------------------------------------------- running


#: Where the children import medfuse from: a snapshot of src/ taken when the run starts, so
#: every run of one benchmark (reference and faulty ones, minutes apart) uses the same code
#: even while the working tree changes.
_SOURCE: list[Path] = [ROOT / "src"]


def snapshot_source(work: Path) -> Path:
    dest = work / "src"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ROOT / "src" / "medfuse", dest / "medfuse",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "fault_engine.py").write_text(ENGINE_MODULE)
    if (ROOT / "weights").is_dir():  # the bundled weights, where an editable checkout has them
        shutil.copytree(ROOT / "weights", work / "weights", dirs_exist_ok=True)
    _SOURCE[0] = dest
    return dest


def _env(engine: str) -> dict[str, str]:
    env = dict(os.environ)
    env["FAULT_ENGINE"] = engine
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(_SOURCE[0])] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def start_batch(args: list[str], engine: str, log: Path, session: bool = False,
                fsize: int | None = None) -> subprocess.Popen[bytes]:
    """``medfuse batch ARGS`` in a child; ``session``: in a process group of its own (for
    a group kill); ``fsize``: a file size limit in bytes (SIGXFSZ ignored, so a write past
    it fails like one on a full disk)."""

    def limit() -> None:
        if fsize is not None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-c", CHILD, "batch", *args],
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(engine),
                                start_new_session=session,
                                preexec_fn=limit if fsize is not None else None)


def reap(proc: subprocess.Popen[bytes], started: float, killed: bool = False) -> Run:
    """Wait for the child with wait4, which also gives its own peak RSS."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, round(time.monotonic() - started, 2),
               round(usage.ru_maxrss / 1024, 1), killed)


def run_to_end(args: list[str], engine: str, log: Path) -> Run:
    started = time.monotonic()
    return reap(start_batch(args, engine, log), started)


def staged(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"{STAGING}*")] if folder.exists() else []


def _outputs(folder: Path) -> int:
    return len(list(folder.glob("*.png"))) if folder.exists() else 0


def faulty_run(data: Path, out: Path, engine: str, log: Path, kills: int, sig: signal.Signals,
               good: int, rng: random.Random, report: Report, restart: str = "skip-existing",
               extra_args: tuple[str, ...] = ()) -> int:
    """Interrupt ``batch --RESTART`` ``kills`` times with ``sig``, each time once a
    random number of new outputs has appeared plus a random few milliseconds (so the signal
    lands anywhere in the fusion and writing of a pair), then let a run finish. Returns how
    many staged entries were found right after the interrupted runs."""
    left = 0
    done = 0
    args = [str(data), str(out), f"--{restart}", "--quiet", *extra_args]
    while True:
        started = time.monotonic()
        before = _outputs(out)
        proc = start_batch(args, engine, log)
        remaining = good - before
        if done < kills and remaining > 1:
            target = before + rng.randint(1, max(1, min(remaining - 1, remaining // (kills - done))))
            extra = rng.uniform(0.0, 0.05)
            finished = False
            while _outputs(out) < target:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
                    finished = True  # it ended before the moment came
                    break
                time.sleep(0.002)
            if not finished:
                time.sleep(extra)
                proc.send_signal(sig)
                run = reap(proc, started)
                run.killed = run.exit == -sig
                report.runs.append(run)
                done += 1
                left += len(staged(out))
                report.restarts += 1
                continue
        report.runs.append(reap(proc, started))
        return left  # a run that ends by itself has done every pair


# ---------------------------------------------------------------------------- scenarios


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for_outputs(proc: subprocess.Popen[bytes], out: Path, count: int) -> bool:
    """Wait until ``count`` outputs exist; False if the run ended first."""
    while _outputs(out) < count:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
            return False
        time.sleep(0.002)
    return True


def resume_to_end(data: Path, out: Path, engine: str, log: Path, extra: tuple[str, ...],
                  limit: int = 5) -> list[Run]:
    """``batch --resume`` until a run exits 0 or 1 (done; 1: the bad pairs) by itself."""
    runs = []
    for _ in range(limit):
        run = run_to_end([str(data), str(out), "--resume", "--quiet", *extra], engine, log)
        runs.append(run)
        if run.exit in (0, 1):
            break
    return runs


def _normalised_record(path: Path, folder: Path) -> object:
    """A provenance record without what may differ between two runs of one batch: its
    times, the output folder's name and the ``force`` a resume sets."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("created", None)
    data.pop("timings_s", None)
    data.get("request", {}).pop("force", None)
    text = json.dumps(data, sort_keys=True)
    return json.loads(text.replace(json.dumps(str(folder))[1:-1], "<OUT>"))


def compare_trees(ref: Path, out: Path) -> dict:  # type: ignore[type-arg]
    """Files that differ between a reference output tree and another (ledgers left out;
    records compared by :func:`_normalised_record`)."""
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*")
                if (p.is_file() or p.is_symlink()) and not p.name.startswith("medfuse-ledger")}

    a, b = files(ref), files(out)
    differ = []
    records = 0
    for rel in sorted(a & b):
        x, y = ref / rel, out / rel
        if rel.endswith(".json"):
            records += 1
            try:
                same = _normalised_record(x, ref) == _normalised_record(y, out)
            except ValueError:
                same = False
        else:
            same = x.read_bytes() == y.read_bytes()
        if not same:
            differ.append(rel)
    staged_left = [p for p in (a | b) if Path(p).name.startswith(STAGING)]
    return {"missing": sorted(a - b), "extra": sorted(b - a), "differ": differ,
            "files": len(a), "records_compared": records, "staged": staged_left}


def scenario_main_kill(data: Path, out: Path, engine: str, log: Path, extra: tuple[str, ...],
                       good: int, rng: random.Random) -> dict:  # type: ignore[type-arg]
    """SIGKILL of the main process of ``batch --workers 2`` only; its workers (and the
    resource tracker) must be gone within 10 s."""
    started = time.monotonic()
    proc = start_batch([str(data), str(out), "--workers", "2", "--quiet", *extra], engine, log)
    target = rng.randint(2, max(2, good // 2))
    reached = wait_for_outputs(proc, out, target)
    below = descendants(proc.pid)
    if reached:
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
    reap(proc, started)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = [p for p in below if alive(p)]
    for p in orphans:  # not to disturb what follows
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    runs = resume_to_end(data, out, engine, log, extra)
    return {"name": "main-kill", "killed": reached, "processes_below": len(below),
            "orphans_after_10s": len(orphans), "resumes": len(runs),
            "seconds": round(time.monotonic() - started, 1)}


def scenario_group_kill(data: Path, out: Path, engine: str, log: Path, extra: tuple[str, ...],
                        good: int, rng: random.Random) -> dict:  # type: ignore[type-arg]
    """SIGKILL of the whole process group (``batch --workers 2`` and its workers) at once."""
    started = time.monotonic()
    proc = start_batch([str(data), str(out), "--workers", "2", "--quiet", *extra], engine, log,
                       session=True)
    reached = wait_for_outputs(proc, out, rng.randint(2, max(2, good // 2)))
    if reached:
        time.sleep(rng.uniform(0.0, 0.05))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    reap(proc, started)
    runs = resume_to_end(data, out, engine, log, extra)
    return {"name": "group-kill", "killed": reached, "resumes": len(runs),
            "seconds": round(time.monotonic() - started, 1)}


def _mount_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                        capture_output=True)
    return cp.returncode == 0


def scenario_disk_full(data: Path, out: Path, engine: str, log: Path, extra: tuple[str, ...],
                       ref: Path) -> dict:  # type: ignore[type-arg]
    """The output folder fills half-way through the batch (a tmpfs of half the reference's
    size, or a file size limit where no mount is possible); then room is made and the
    batch resumed."""
    started = time.monotonic()
    need = sum(p.stat().st_size for p in ref.rglob("*") if p.is_file())
    mounted = _mount_tmpfs(out, max(64 << 10, need // 2))
    how = "tmpfs of half the reference's size" if mounted else "RLIMIT_FSIZE (no mount)"
    try:
        if mounted:
            first = run_to_end([str(data), str(out), "--quiet", *extra], engine, log)
        else:  # every file but the smallest fails: the limit sits below a fused PNG
            sizes = sorted(p.stat().st_size for p in ref.glob("*.png"))
            proc = start_batch([str(data), str(out), "--quiet", *extra], engine, log,
                               fsize=max(1, sizes[len(sizes) // 2] - 1))
            first = reap(proc, started)
        half = _outputs(out)
        staged_after_full = len(staged(out))
        if mounted:
            subprocess.run(["mount", "-o", f"remount,size={need * 4 + (8 << 20)}", str(out)],
                           check=True)
        runs = resume_to_end(data, out, engine, log, extra)
        result = {"name": "disk-full", "how": how, "first_exit": first.exit,
                  "outputs_when_full": half, "staged_after_full": staged_after_full,
                  "resumes": len(runs), "seconds": round(time.monotonic() - started, 1)}
        result.update(compare_trees(ref, out))
        return result
    finally:
        if mounted:
            # keep the tree for the caller's comparison: copy it out, then unmount
            keep = out.with_name(out.name + "-copy")
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(out, keep, symlinks=True)
            subprocess.run(["umount", str(out)], check=False)
            shutil.rmtree(out, ignore_errors=True)
            keep.rename(out)


def run_scenarios(names: list[str], data: Path, work: Path, engine: str, log: Path,
                  extra: tuple[str, ...], good: int, ref: Path, rng: random.Random
                  ) -> list[dict]:  # type: ignore[type-arg]
    results = []
    for name in names:
        out = work / f"scenario-{name}"
        shutil.rmtree(out, ignore_errors=True)
        if name == "main-kill":
            r = scenario_main_kill(data, out, engine, log, extra, good, rng)
        elif name == "group-kill":
            r = scenario_group_kill(data, out, engine, log, extra, good, rng)
        else:
            r = scenario_disk_full(data, out, engine, log, extra, ref)
        if "files" not in r:
            r.update(compare_trees(ref, out))
        r["ok"] = (not (r["missing"] or r["extra"] or r["differ"] or r["staged"])
                   and r.get("orphans_after_10s", 0) == 0)
        results.append(r)
    return results


# ---------------------------------------------------------------------------- checking


def compare(ref: Path, out: Path, good: list[str], bad: list[str], report: Report) -> None:
    from medfuse.errors import MedfuseError
    from medfuse.io.images import read_pixels

    for name in good:
        expected, got = ref / f"{name}.png", out / f"{name}.png"
        if not got.exists():
            report.lost += 1
            continue
        try:
            read_pixels(got)
        except MedfuseError:
            report.partial += 1
            continue
        if not expected.exists() or got.read_bytes() != expected.read_bytes():
            report.corrupt += 1
        if (ref / f"{name}.png.json").exists():  # a provenance record beside each output
            record = out / f"{name}.png.json"
            if not record.exists():
                report.records_missing += 1
            else:
                try:
                    json.loads(record.read_text())
                except ValueError:
                    report.records_broken += 1
    report.bad_written = sum((out / f"{n}.png").exists() for n in bad)
    wanted = {p.name for p in ref.iterdir()}
    report.extra = sum(1 for p in out.iterdir()
                       if p.name not in wanted and not p.name.startswith(STAGING)
                       and p.name.split(".")[0] not in bad)
    report.staging_left_at_end = len(staged(out))


# ---------------------------------------------------------------------------- main


def random_weights(path: Path, seed: int) -> Path:
    import torch

    from medfuse.model import GeSeNet

    torch.manual_seed(seed)
    torch.save(GeSeNet().state_dict(), path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--bad-fraction", type=float, default=0.1)
    ap.add_argument("--kills", type=int, default=5, help="SIGKILLs before a run may finish")
    ap.add_argument("--terms", type=int, default=0, help="SIGTERM rounds afterwards")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=("weights", "mean"), default="weights")
    ap.add_argument("--restart", choices=("skip-existing", "resume"), default="skip-existing",
                    help="how an interrupted batch is run again (resume also redoes pairs "
                    "whose provenance record is missing and removes staged leftovers)")
    ap.add_argument("--scenarios", default="main-kill,group-kill,disk-full",
                    help="comma-separated: main-kill, group-kill, disk-full (or none)")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    a = ap.parse_args(argv)

    work = a.workdir or Path(tempfile.mkdtemp(prefix="medfuse-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    try:
        snapshot_source(work)
        data = work / "data"
        if data.exists():
            shutil.rmtree(data)
        good, bad = build_dataset(data, a.pairs, a.bad_fraction, a.seed)
        report = Report(a.pairs, len(good), len(bad), a.engine, a.seed, a.restart, a.kills,
                        a.terms)
        log = work / "stderr.log"
        extra: list[str] = ["--device", "cpu"]
        if a.engine == "weights":
            extra += ["--weights", str(random_weights(work / "random.pt", a.seed))]

        ref = work / "reference"
        shutil.rmtree(ref, ignore_errors=True)
        run = run_to_end([str(data), str(ref), "--quiet", *extra], a.engine, log)
        report.reference_seconds, report.reference_exit = run.seconds, run.exit
        report.peak_rss_mib_all_pairs = run.max_rss_mib
        # the same command over a quarter of the pairs: peak RSS should not grow with pairs
        quarter = work / "data-quarter"
        shutil.rmtree(quarter, ignore_errors=True)
        for sub in ("MRI", "PET"):
            (quarter / sub).mkdir(parents=True)
            for f in sorted((data / sub).iterdir())[: max(1, a.pairs // 4)]:
                shutil.copy2(f, quarter / sub / f.name)
        shutil.rmtree(work / "quarter", ignore_errors=True)
        q = run_to_end([str(quarter), str(work / "quarter"), "--quiet", *extra], a.engine, log)
        report.peak_rss_mib_quarter = q.max_rss_mib

        out = work / "faulty"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        report.staging_left_after_kills = faulty_run(
            data, out, a.engine, log, a.kills, signal.SIGKILL, len(good), rng, report, a.restart,
            tuple(extra))
        report.kills = sum(r.killed for r in report.runs)
        report.faulty_seconds = round(time.monotonic() - t0, 2)
        compare(ref, out, good, bad, report)

        if a.terms:
            term_out = work / "terminated"
            shutil.rmtree(term_out, ignore_errors=True)
            before = len(report.runs)
            faulty_run(data, term_out, a.engine, log, a.terms, signal.SIGTERM, len(good), rng,
                       report, a.restart, tuple(extra))
            report.terms = sum(r.killed for r in report.runs[before:])
            # every interrupted run was checked right after it ended
            report.staging_left_after_terms = len(staged(term_out))

        names = [n.strip() for n in a.scenarios.split(",") if n.strip() and n.strip() != "none"]
        unknown = set(names) - {"main-kill", "group-kill", "disk-full"}
        if unknown:
            ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        report.scenarios = run_scenarios(names, data, work, a.engine, log, tuple(extra),
                                         len(good), ref, rng)

        print_report(report, work)
        if a.json:
            a.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2) + "\n")
        return 0 if report.ok else 1
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def print_report(r: Report, work: Path) -> None:
    peak_faulty = max((x.max_rss_mib for x in r.runs), default=0.0)
    load = os.getloadavg()
    lines = [
        f"machine: {os.cpu_count()} CPU(s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"engine: {r.engine}; seed {r.seed}; work folder {work}",
        f"pairs: {r.pairs} ({r.good} good, {r.bad} bad)",
        f"reference (serial, undisturbed): {r.reference_seconds:.1f} s, exit {r.reference_exit}",
        f"peak RSS: {r.peak_rss_mib_all_pairs:.0f} MiB over all pairs, "
        f"{r.peak_rss_mib_quarter:.0f} MiB over a quarter, {peak_faulty:.0f} MiB in any faulty run",
        f"faults: {r.kills} SIGKILL, {r.restarts} restarts with --{r.restart}, "
        f"{r.faulty_seconds:.1f} s in all",
        f"lost {r.lost}, corrupt {r.corrupt}, partial {r.partial}, extra {r.extra}, "
        f"bad pairs written {r.bad_written}; provenance records (.json) missing "
        f"{r.records_missing}, broken {r.records_broken}",
        f"staged entries left by SIGKILL: {r.staging_left_after_kills} right after the kills, "
        f"{r.staging_left_at_end} at the end (a killed process cannot clean up; only a "
        "--resume run removes them)",
    ]
    if r.terms_requested:
        lines.append(f"SIGTERM rounds: {r.terms}; staged entries left: {r.staging_left_after_terms}")
    for sc in r.scenarios:
        detail = {k: v for k, v in sc.items()
                  if k not in ("name", "ok", "missing", "extra", "differ", "staged")}
        lines.append(f"scenario {sc['name']}: {'ok' if sc['ok'] else 'FAILED'}; "
                     f"missing {len(sc['missing'])}, extra {len(sc['extra'])}, "
                     f"differ {len(sc['differ'])}, staged {len(sc['staged'])}; "
                     + ", ".join(f"{k} {v}" for k, v in detail.items()))
    lines.append("RESULT: " + ("ok" if r.ok else "FAILED"))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
