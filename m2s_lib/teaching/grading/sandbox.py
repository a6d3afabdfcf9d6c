"""Run one submission's notebook where it cannot reach anything but its own scratch folder (docs/teaching.md).

On Linux with bubblewrap (``bwrap``; Debian/Ubuntu: ``apt-get install bubblewrap``) the executor
(:mod:`m2s_lib.teaching.grading.execute`) and the student's kernel run in a sandbox:

* the root file system read-only; ``/tmp``, the teacher's home, the repository, the course folder, the submissions
  folder and the parent of the scratch folders hidden under empty tmpfs mounts; only what Python needs to import
  the interpreter, its packages and ``m2s_lib`` (without the repository's ``notebooks/`` and ``tests/``) is bound
  back, read-only; the submission's scratch folder is the one writable place; read-only *shared inputs* (the
  synthetic set, a checkpoint) are bound into it;
* no network (``--unshare-net``), its own process tree (``--unshare-pid``: when the executor ends or is killed,
  every process the student started dies with it), ``--die-with-parent``, ``--new-session`` (no terminal);
* a memory cap (``RLIMIT_AS``, address space: torch needs about 2.5 GiB of it just to import);
* a per-cell time limit (the executor) and a per-submission one (here: the whole sandbox is killed).

Without bubblewrap (macOS, Windows, a Linux without user namespaces) the notebook still runs, in the scratch
folder with the same time limits, but *unsandboxed*: the student's code runs with the grader's rights. The runner
says so in the summary and in ``problems.csv``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ExecutionResult", "Limits", "UNSANDBOXED_NOTE", "bwrap_path", "hidden_and_kept", "run_notebook"]

UNSANDBOXED_NOTE = ("ran unsandboxed (no bubblewrap): the student's code had the grader's rights (files, network, "
                    "processes); install bubblewrap (Linux) or grade in a container")  # fmt: skip
_GRACE = 2  # seconds the executor gets beyond the submission's limit (a cell timing out right at it)


@dataclass(frozen=True)
class Limits:
    """Time and memory limits of one submission. ``cell_timeout`` and ``submission_timeout`` in seconds,
    ``memory_bytes`` the address-space cap (``None``: no cap)."""

    cell_timeout: int = 600
    submission_timeout: int = 1800
    memory_bytes: int | None = 8 * 2**30


@dataclass
class ExecutionResult:
    """What running one notebook did."""

    returncode: int | None
    seconds: float
    sandboxed: bool
    timed_out: bool = False
    timeout_cell: int | None = None  # index of the cell that was running when time ran out
    timeout_grade_id: str | None = None
    timeout_after: float | None = None  # seconds that cell had run
    executed: Path | None = None  # the executed notebook (partial when timed out), None when none was written
    cell_seconds: dict[int, float] = field(default_factory=dict)
    error: str | None = None  # the executor's own failure (not the student's errors, which are in the notebook)
    limit: str = ""  # which limit stopped it: "cell limit of N s" or "submission limit of N s"

    @property
    def timeout_message(self) -> str | None:
        if not self.timed_out:
            return None
        where = self.timeout_grade_id or (f"#{self.timeout_cell}" if self.timeout_cell is not None else "?")
        return f"timed out in cell {where} after {self.timeout_after or self.seconds:.0f} s ({self.limit})"


def bwrap_path() -> str | None:
    """The bubblewrap binary when it exists and can make a sandbox here (user namespaces), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "true"],
                           capture_output=True, timeout=30)  # fmt: skip
    return path if probe.returncode == 0 else None


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def hidden_and_kept(hide: Sequence[Path], extra_keep: Sequence[Path] = ()) -> tuple[list[Path], list[Path]]:
    """The folders to hide, and what to bind back read-only inside them so that Python still runs: the interpreter's
    prefixes, its ``sys.path`` folders and the ``m2s_lib`` package (never a hidden folder itself)."""
    import m2s_lib

    hidden = sorted({Path(p).resolve() for p in hide if Path(p).exists()}, key=lambda p: len(p.parts))
    hidden = [p for p in hidden if p != Path("/") and not any(_under(p, q) for q in hidden if q != p)]
    prefixes = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent]
    # sys.path folders only where packages live (a test runner's sys.path may hold the repository's tests/)
    packages = [Path(p) for p in sys.path if p and ("-packages" in p or any(_under(Path(p).resolve(), q)
                                                                             for q in prefixes))]  # fmt: skip
    candidates = {*prefixes, Path(m2s_lib.__file__).resolve().parent, *packages, *(Path(p) for p in extra_keep)}
    keep = set()
    for path in candidates:
        try:
            path = path.resolve()
        except OSError:
            continue
        if not path.is_dir() or not any(_under(path, h) and path != h for h in hidden):
            continue
        if any(_under(h, path) for h in hidden):  # an ancestor of something hidden (e.g. the repository root)
            continue
        keep.add(path)
    return hidden, sorted(keep, key=lambda p: len(p.parts))


def _bwrap_argv(bwrap: str, scratch: Path, hide: Sequence[Path], ro_binds: Mapping[str, Path],
                env: Mapping[str, str]) -> list[str]:  # fmt: skip
    hidden, keep = hidden_and_kept([Path("/tmp"), Path.home(), *hide, scratch.parent])
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for h in hidden:
        argv += ["--tmpfs", str(h)]
    for k in keep:
        argv += ["--ro-bind", str(k), str(k)]
    argv += ["--bind", str(scratch), str(scratch)]
    for rel, source in ro_binds.items():
        target = scratch / rel
        target.mkdir(parents=True, exist_ok=True)
        argv += ["--ro-bind", str(source), str(target)]
    for name in ("tests", "notebooks"):  # the repository's masters, should the package live inside a kept folder
        import m2s_lib

        folder = Path(m2s_lib.__file__).resolve().parent.parent / name
        if folder.is_dir() and not any(_under(folder, h) for h in hidden):
            argv += ["--tmpfs", str(folder)]
    for h in hidden:  # empty and read-only: writing "outside" must fail, not land in a private tmpfs
        argv += ["--remount-ro", str(h)]
    argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
             "--new-session", "--chdir", str(scratch), "--clearenv"]  # fmt: skip
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


def _environment(scratch: Path, extra: Mapping[str, str]) -> dict[str, str]:
    home = scratch / "home"
    for sub in ("home", "tmp"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "TMPDIR": str(scratch / "tmp"), "PATH": os.pathsep.join([str(Path(sys.executable).parent),
           "/usr/local/bin", "/usr/bin", "/bin"]), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MKL_NUM_THREADS": os.environ.get(
           "OMP_NUM_THREADS", "1"), "PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1",
           "LANG": "C.UTF-8", "JUPYTER_RUNTIME_DIR": str(scratch / "tmp" / "jupyter"),
           "MPLCONFIGDIR": str(scratch / "tmp" / "mpl"), "TORCH_HOME": str(home / ".cache" / "torch"),
           "XDG_CACHE_HOME": str(home / ".cache"), "IPYTHONDIR": str(home / ".ipython")}  # fmt: skip
    env.update(extra)
    return env


def _limit_memory(nbytes: int | None):
    def apply() -> None:
        if nbytes:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
        resource_core = __import__("resource")
        resource_core.setrlimit(resource_core.RLIMIT_CORE, (0, 0))

    return apply


def _kill(proc: subprocess.Popen) -> None:
    """The executor's whole process group (and, in the sandbox, its pid namespace with it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def run_notebook(notebook: Path, executed: Path, scratch: Path, limits: Limits, *, env: Mapping[str, str] | None = None,
                 hide: Sequence[Path] = (), ro_binds: Mapping[str, Path] | None = None,
                 sandbox: bool | None = None) -> ExecutionResult:  # fmt: skip
    """Execute ``notebook`` (inside ``scratch``) into ``executed`` (inside ``scratch``), in the sandbox when
    ``sandbox`` is true or ``None`` and bubblewrap works (``sandbox=True`` without it raises).

    ``hide``: folders the student's code must not see (the repository, the course, the submissions); ``ro_binds``:
    ``{path relative to scratch: source}`` bound read-only (shared inputs). Never raises for what the notebook does.
    """
    scratch = scratch.resolve()
    bwrap = bwrap_path() if sandbox is not False else None
    if sandbox and bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not available or cannot create a sandbox here: apt-get install "
                           "bubblewrap, or grade with --unsandboxed")  # fmt: skip
    environment = _environment(scratch, env or {})
    read, write = os.pipe()
    inner = [sys.executable, "-m", "m2s_lib.teaching.grading.execute", str(notebook), str(executed),
             "--cell-timeout", str(limits.cell_timeout), "--progress-fd", str(write)]  # fmt: skip
    if bwrap:
        argv = _bwrap_argv(bwrap, scratch, hide, ro_binds or {}, environment) + inner
        popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        for rel, source in (ro_binds or {}).items():  # no bind mounts: a private copy per submission
            target = scratch / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        argv, popen_env = inner, {**os.environ, **environment}
        popen_env.pop("PYTHONPATH", None)
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=scratch, env=popen_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, pass_fds=(write,), start_new_session=True,
                            preexec_fn=_limit_memory(limits.memory_bytes))  # fmt: skip
    os.close(write)
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=_read_events, args=(read, events), daemon=True)
    reader.start()
    tail: list[bytes] = []
    drain = threading.Thread(target=_drain, args=(proc.stdout, tail), daemon=True)
    drain.start()
    result = ExecutionResult(returncode=None, seconds=0.0, sandboxed=bwrap is not None)
    try:
        proc.wait(timeout=limits.submission_timeout + _GRACE)
    except subprocess.TimeoutExpired:
        result.timed_out, result.limit = True, f"the submission's limit of {limits.submission_timeout} s"
    finally:
        _kill(proc)  # also after a normal end: whatever the student left behind in the process group
        proc.wait()
    reader.join(timeout=5)
    drain.join(timeout=5)
    result.seconds = round(time.monotonic() - start, 2)
    result.returncode = proc.returncode
    _apply_events(result, events, limits)
    if executed.is_file() and executed.stat().st_size:
        result.executed = executed
    if not result.timed_out and proc.returncode not in (0, 3):
        text = b"".join(tail).decode("utf-8", "replace").strip().splitlines()
        result.error = (text[-1] if text else f"the executor ended with status {proc.returncode}")[:300]
    return result


def _read_events(fd: int, events: list) -> None:
    with os.fdopen(fd, "r", errors="replace") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event | {"t": time.monotonic()})


def _drain(stream, tail: list) -> None:
    for line in iter(stream.readline, b""):
        tail.append(line)
        del tail[:-20]


def _apply_events(result: ExecutionResult, events: Sequence[Mapping[str, Any]], limits: Limits) -> None:
    running: Mapping[str, Any] | None = None
    for event in events:
        if "start" in event:
            running = event
        elif "done" in event:
            result.cell_seconds[int(event["done"])] = float(event.get("seconds", 0.0))
            running = None
        elif "timeout" in event:
            result.timed_out, result.limit = True, f"the cell limit of {limits.cell_timeout} s"
            result.timeout_cell, result.timeout_grade_id = event.get("timeout"), event.get("grade_id")
            result.timeout_after = float(event.get("seconds") or 0.0)
            return
    if result.timed_out and running is not None:  # killed by the per-submission limit while this cell ran
        result.timeout_cell, result.timeout_grade_id = running.get("start"), running.get("grade_id")
        result.timeout_after = round(time.monotonic() - running["t"], 1)
