"""The parts of an exercise: its named checks, its cases, and the comparisons that judge an answer.

An :class:`Exercise` belongs to one graded test cell (its ``grade_id``). Its points are split over named
:class:`Check` s; each :class:`Case` (a name, plain parameters and plain tensors) feeds some of them. ``run`` calls
the student's answer on a case (inside the student's kernel, torch only) and returns plain outputs; ``judge``
compares those outputs with the library's reference computed from the same case, and names the common mistakes.
``judge`` is a pure function of plain tensors: when grading it runs in a trusted process, never in the kernel.

A check's points are awarded iff every case that feeds it passes it; an exercise's points are the sum.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "Case",
    "Check",
    "CheckResult",
    "Exercise",
    "WrongType",
    "compare_number",
    "compare_tensor",
    "exact",
    "to_plain",
]


@dataclass(frozen=True)
class Check:
    """A named part of an exercise, worth ``points``."""

    name: str
    points: float


@dataclass
class CheckResult:
    """The outcome of one check (``points`` awarded of ``max_points``); ``mistake`` says what was wrong."""

    name: str
    points: float = 0.0
    max_points: float = 0.0
    passed: bool = False
    mistake: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Case:
    """One input the grader chose: ``params`` are JSON values, ``arrays`` plain tensors; ``feeds`` names the
    checks it counts for (known to the trusted side only)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    feeds: tuple[str, ...] = ()

    def __getitem__(self, key: str):
        return self.arrays[key] if key in self.arrays else self.params[key]


class WrongType(Exception):
    """The answer returned something of the wrong kind (a subclass included); the message says what."""


def exact(value, kind: type | tuple[type, ...], what: str):
    """``value`` if its type is exactly ``kind`` (one of them): subclasses are refused, with a message."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(value) not in kinds and isinstance(value, kinds):
        raise WrongType(f"{what} must be a plain {kinds[0].__name__}, got {type(value).__name__}, {SUBCLASS}")
    if type(value) not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise WrongType(f"{what} must be a {names}, got {type(value).__name__}")
    return value


SUBCLASS = "a subclass"  # words of the WrongType message for a subclass of an accepted type (the judge flags it)
_NUMPY_SCALARS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64, np.bool_)


def to_plain(value, what: str) -> np.ndarray:
    """A student's output as a plain numpy array: exactly a ``torch.Tensor`` (dense, CPU or not), an ``int``, a
    ``float`` or a numpy scalar. Anything else (a subclass included) is :class:`WrongType`."""
    if type(value) is torch.Tensor:
        if value.layout != torch.strided or value.dtype == torch.bfloat16:
            raise WrongType(f"{what} must be a dense float or integer tensor, got {value.dtype} {value.layout}")
        return np.array(torch.Tensor.numpy(torch.Tensor.cpu(torch.Tensor.detach(value))), copy=True)
    if type(value) is int:
        return np.array(value, dtype=np.int64)
    if type(value) is float:
        return np.array(value, dtype=np.float64)
    if type(value) in _NUMPY_SCALARS:
        return np.array(value)
    for kind in (torch.Tensor, int, float, np.ndarray):
        if isinstance(value, kind):
            raise WrongType(f"{what} must be a plain {kind.__name__}, got {type(value).__name__}, {SUBCLASS} of "
                            f"{kind.__name__}")  # fmt: skip
    raise WrongType(f"{what} must be a torch.Tensor or a number, got {type(value).__name__}")


# -------------------------------------------------------------------------------------------------------------
# Comparisons: pure functions of plain tensors (numbers), used by ``judge``
# -------------------------------------------------------------------------------------------------------------
def _tolerance(*dtypes: torch.dtype) -> tuple[float, float]:
    if all(d == torch.float64 for d in dtypes):
        return 1e-7, 1e-7
    return 1.3e-6 * 10, 1e-5 * 10  # float32 anywhere: float32 tolerances (sums of up to a few hundred terms)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    return tuple(a.shape) == tuple(b.shape) and bool(torch.allclose(a.to(torch.float64), b.to(torch.float64),
                                                                    rtol=rtol, atol=atol, equal_nan=False))


def compare_tensor(actual: torch.Tensor, expected: torch.Tensor, mistakes: Mapping[str, torch.Tensor] | None = None,
                   rtol: float | None = None, atol: float | None = None) -> str | None:  # fmt: skip
    """``None`` when ``actual`` has ``expected``'s shape and values (within the tolerance of the coarser dtype);
    else what is wrong, in a student's words (a known mistake by its description). The dtype is checked apart
    (:func:`dtype_mistake`), so that a wrong dtype costs only the dtype check."""
    if tuple(actual.shape) != tuple(expected.shape):
        return f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if not (actual.is_floating_point() or actual.dtype in (torch.int64, torch.int32)):
        return f"dtype {actual.dtype}: expected floating-point values"
    default = _tolerance(actual.dtype, expected.dtype)
    rtol, atol = rtol if rtol is not None else default[0], atol if atol is not None else default[1]
    if _close(actual, expected, rtol, atol):
        return None
    for description, output in (mistakes or {}).items():
        if _close(actual, output, rtol, atol):
            return f"your output equals {description}"
    diff = (actual.to(torch.float64) - expected.to(torch.float64)).abs()
    nan = int(torch.isnan(diff).sum())
    wrong = int((diff > atol + rtol * expected.to(torch.float64).abs()).sum()) if not nan else nan
    worst = float(diff.nan_to_num(float("inf")).max()) if diff.numel() else 0.0
    return (f"values differ from the reference in {wrong} of {diff.numel()} elements (largest difference "
            f"{worst:.3g}" + (f", {nan} NaN" if nan else "") + ")")  # fmt: skip


def dtype_mistake(actual: torch.Tensor, expected: torch.dtype) -> str | None:
    if actual.dtype == expected:
        return None
    return f"dtype {actual.dtype} for a {expected} input: keep the input's dtype"


def compare_number(actual: torch.Tensor, expected: float, mistakes: Mapping[str, float] | None = None,
                   rel: float = 1e-6) -> str | None:  # fmt: skip
    """``None`` when the single number ``actual`` equals ``expected`` (relative precision ``rel``); else why not."""
    if actual.numel() != 1:
        return f"expected a single number, got a tensor of shape {tuple(actual.shape)}"
    value = float(actual.reshape(()).to(torch.float64))
    if abs(value - expected) <= rel * max(1.0, abs(expected)):
        return None
    for description, wrong in (mistakes or {}).items():
        if abs(value - wrong) <= rel * max(1.0, abs(wrong)):
            return f"got {value:.6g}, which is {description}"
    return f"got {value:.6g}, expected {expected:.6g}"


# -------------------------------------------------------------------------------------------------------------
# The exercise
# -------------------------------------------------------------------------------------------------------------
def case_generator(seed: int, grade_id: str, name: str) -> torch.Generator:
    """The generator of one case: the same (seed, exercise, case) always gives the same tensors."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{grade_id}/{name}".encode()) + seed)


class Exercise:
    """One autograded exercise. Subclasses set the class attributes and write ``make_case``, ``run`` and ``judge``.

    * ``grade_id``: the test cell's nbgrader ``grade_id`` (e.g. ``"su_forward_tests"``);
    * ``solution_ids``: the solution cells' ``grade_id`` s;
    * ``title``: e.g. ``"Exercise 1 (`ScratchSU`)"``;
    * ``forbidden``: dotted library symbols this exercise must not reach (the reference implementation);
    * ``checks``: the named checks and their points;
    * ``visible``: specs of the cases a student's own run checks (``{"name": ..., "feeds": (...), ...}``); the
      hidden specs live with the grader.
    * ``hint``: where to look, without the line of code.
    """

    grade_id: str = ""
    solution_ids: tuple[str, ...] = ()
    title: str = ""
    forbidden: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    visible: tuple[Mapping[str, Any], ...] = ()
    hint: str | None = None

    # -- cases ---------------------------------------------------------------------------------------------
    def make_case(self, spec: Mapping[str, Any], generator: torch.Generator) -> Case:
        """The case described by ``spec`` (its name, its checks, sizes, dtype, mode …), tensors from ``generator``."""
        raise NotImplementedError

    def cases(self, specs: Sequence[Mapping[str, Any]], seed: int = 0) -> list[Case]:
        out = []
        for spec in specs:
            case = self.make_case(spec, case_generator(seed, self.grade_id, spec["name"]))
            case.name, case.feeds = spec["name"], tuple(spec["feeds"])
            unknown = set(case.feeds) - {c.name for c in self.checks}
            if unknown:
                raise ValueError(f"{self.grade_id}: case {case.name!r} feeds unknown checks {sorted(unknown)}")
            out.append(case)
        return out

    def visible_cases(self, seed: int = 0) -> list[Case]:
        return self.cases(self.visible, seed)

    # -- in the kernel ---------------------------------------------------------------------------------------
    def run(self, answer, case: Case) -> dict[str, Any]:
        """Call the student's ``answer`` on ``case``; returns ``{output name: tensor or number}`` (raw values: the
        framework turns them into plain arrays and refuses wrong types)."""
        raise NotImplementedError

    # -- trusted -------------------------------------------------------------------------------------------
    def judge(self, case: Case, outputs: Mapping[str, torch.Tensor]) -> list[CheckResult]:
        """One :class:`CheckResult` per check that ``case`` feeds (``passed`` and ``mistake`` set; points are
        filled in by :func:`score`)."""
        raise NotImplementedError

    def scan_extra(self, tree, source: str) -> list[str]:
        """Exercise-specific static findings in a solution cell (``tree``: its ``ast``); default none."""
        return []

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def number(self) -> str:
        return self.title.split("(")[0].strip()

    @property
    def max_points(self) -> float:
        return float(sum(c.points for c in self.checks))

    def result(self, check: str, mistake: str | None, hint: str | None = None) -> CheckResult:
        """The result of ``check`` on one case: passed when ``mistake`` is ``None``."""
        return CheckResult(check, passed=mistake is None, mistake=mistake, hint=None if mistake is None else
                           (hint or self.hint))  # fmt: skip

    def results(self, case: Case, mistake: str | None, hint: str | None = None) -> list[CheckResult]:
        """The same outcome for every check ``case`` feeds."""
        return [self.result(name, mistake, hint) for name in case.feeds]


def score(exercise: Exercise, per_case: Sequence[tuple[Case, list[CheckResult]]]) -> list[CheckResult]:
    """Merge the cases' results into one :class:`CheckResult` per check: awarded iff every case feeding it passed;
    the mistake shown is the first case's that failed (named by the case)."""
    merged = []
    for check in exercise.checks:
        fed = [(case, r) for case, results in per_case for r in results if r.name == check.name]
        failed = [(case, r) for case, r in fed if not r.passed]
        if not fed:
            merged.append(CheckResult(check.name, 0.0, check.points, False, "no case of this check was run"))
        elif failed:
            case, r = failed[0]
            merged.append(CheckResult(check.name, 0.0, check.points, False, f"{r.mistake} [case: {case.name}]",
                                      r.hint))  # fmt: skip
        else:
            merged.append(CheckResult(check.name, float(check.points), check.points, True))
    return merged


Runner = Callable[[Any, Case], dict]
