"""A best-effort watch inside the student's kernel while it is graded (the static scan is the main defence).

* :func:`install` adds an audit hook (``sys.addaudithook``: it cannot be removed) that records reading a notebook
  file and replacing the interpreter's hooks, and, while an answer runs, starting a process or forking. The grader
  starts it first thing in the kernel.
* :func:`watch` runs the student's answer under ``sys.setprofile`` and records when the code of a forbidden
  library symbol (the exercise's reference implementation) runs, or when the answer removes the profiler.

What it records goes into the outputs the kernel writes; the trusted judge turns it into flags. Nothing here can
award a point.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterable, Iterator

__all__ = ["events", "install", "watch"]

_EVENTS: list[str] = []
_INSTALLED = [False]
_OWN = [False]  # True while this module itself sets the profiler
_PROCESS = ("subprocess.Popen", "os.system", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec",
            "os.startfile", "pty.spawn")  # fmt: skip
_HOOKS = ("sys.setprofile", "sys.settrace", "sys.addaudithook")
_WATCHING = [False]  # process events count only while an answer runs (the notebook's own cells may start git)


def _hook(event: str, args) -> None:
    try:
        if event in _PROCESS and _WATCHING[0]:
            _record(f"background process: {event}")
        elif event in _HOOKS and not _OWN[0]:
            _record(f"patching: {event}")
        elif event == "open" and args and isinstance(args[0], (str, bytes)):
            path = args[0].decode(errors="replace") if isinstance(args[0], bytes) else args[0]
            if path.endswith(".ipynb"):
                _record(f"reads files: opened {path.rsplit('/', 1)[-1]}")
    except Exception:  # noqa: BLE001 — an audit hook must never break the kernel
        pass


def _record(text: str) -> None:
    if text not in _EVENTS and len(_EVENTS) < 50:
        _EVENTS.append(text)


def install() -> None:
    """Start the audit hook (once per process)."""
    if not _INSTALLED[0]:
        sys.addaudithook(_hook)
        _INSTALLED[0] = True


def events() -> list[str]:
    """What was recorded so far (a copy)."""
    return list(_EVENTS)


def _codes(symbols: Iterable[str]) -> set:
    """The code objects of the functions behind dotted ``symbols`` (a class: every function defined in it)."""
    codes = set()
    for symbol in symbols:
        parts = symbol.split(".")
        obj = None
        for cut in range(len(parts) - 1, 0, -1):  # longest importable module prefix
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
            break
        targets = list(vars(obj).values()) if isinstance(obj, type) else [obj]
        for target in targets:
            target = getattr(target, "__func__", target)
            code = getattr(target, "__code__", None)
            if code is not None:
                codes.add(code)
    return codes


@contextlib.contextmanager
def watch(forbidden: Iterable[str], found: list[str]) -> Iterator[None]:
    """Run the body under a profiler that appends to ``found`` the forbidden symbols whose code ran."""
    symbols = list(forbidden)
    codes = {code: symbol for symbol in symbols for code in _codes([symbol])}

    def profiler(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            name = codes[frame.f_code]
            if name not in found:
                found.append(name)

    previous = sys.getprofile()
    _own_setprofile(profiler)
    _WATCHING[0] = True
    try:
        yield
    finally:
        _WATCHING[0] = False
        if sys.getprofile() is not profiler:
            found.append("the profiler was replaced while your answer ran")
        _own_setprofile(previous)


def _own_setprofile(function) -> None:
    _OWN[0] = True
    try:
        sys.setprofile(function)
    finally:
        _OWN[0] = False
