"""Readable in-process checks (the notebooks' old test-cell helpers), kept for hand-written comparisons.

The graded test cells no longer use these: they call :func:`m2s_lib.teaching.exercises.check`, which records the
answer's outputs so that a trusted process judges them (an in-kernel check can be patched by the code it checks).
The comparison itself has one home, :func:`m2s_lib.teaching.exercises.base.compare_tensor`; ``expect_close``
below words its result as before.

A failed check raises ``AssertionError`` whose message starts with ``check '<name>' failed:`` and then says what
was wrong in a student's words: a wrong type, a wrong shape, a wrong dtype, or wrong values. When the caller
passes the outputs of *known mistakes* (for the subtraction unit: ``A + B`` instead of ``|A − B|``), a wrong
answer that matches one of them is named ("your output equals CBR(up(A) + B): ..."). The message ends up in the
feedback nbgrader writes for the student, so it is the whole explanation they get.

Only the checking lives here; each test cell builds its own reference from ``m2s_lib`` (the notebook's own
"is it the library's?" comparison), so the exercise and its grader are read side by side.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["expect", "expect_close", "expect_runs", "expect_scalar", "expect_tensor"]


def _fail(check: str, message: str, hint: str | None = None) -> AssertionError:
    text = f"check {check!r} failed: {message}"
    if hint:
        text += f"\n  hint: {hint}"
    return AssertionError(text)


def expect(condition: bool, check: str, message: str, hint: str | None = None) -> None:
    """Fail the check ``check`` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise _fail(check, message, hint)


def expect_runs(check: str, function, *args, hint: str | None = None, **kwargs):
    """``function(*args, **kwargs)``; an exception it raises becomes a failure of ``check`` that quotes it.

    ``NotImplementedError`` (an exercise's untouched stub) passes through unchanged: the feedback then says plainly
    that the exercise was not done.
    """
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 — any error in the student's code is reported, not a crash of the test
        raise _fail(check, f"your code raised {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}",
                    hint) from err


def expect_tensor(actual, check: str, shape: tuple | torch.Size | None = None, dtype: torch.dtype | None = None,
                  hint: str | None = None) -> torch.Tensor:  # fmt: skip
    """``actual`` must be a tensor (of ``shape`` and ``dtype`` when given); returns it."""
    if not isinstance(actual, torch.Tensor):
        raise _fail(check, f"expected a torch.Tensor, got {type(actual).__name__} ({str(actual)[:60]!r})", hint)
    if shape is not None and tuple(actual.shape) != tuple(shape):
        raise _fail(check, f"shape {tuple(actual.shape)}, expected {tuple(shape)}", hint)
    if dtype is not None and actual.dtype != dtype:
        raise _fail(check, f"dtype {actual.dtype}, expected {dtype} (keep the input's dtype: no .float())", hint)
    return actual


def expect_close(
    actual,
    expected: torch.Tensor,
    check: str,
    mistakes: Mapping[str, torch.Tensor] | None = None,
    hint: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    check_dtype: bool = True,
) -> None:
    """``actual`` must equal ``expected`` (shape, dtype, values within tolerance).

    ``mistakes`` maps a description of a common mistake to the output that mistake gives; a wrong answer close
    to one of them is reported by that description instead of a bare difference. Tolerances default to
    ``torch.testing``'s for the dtype.
    """
    from .exercises.base import compare_tensor

    expect_tensor(actual, check, shape=expected.shape, dtype=expected.dtype if check_dtype else None, hint=hint)
    if rtol is None or atol is None:
        rtol, atol = (1e-7, 1e-7) if expected.dtype == torch.float64 else (1.3e-6, 1e-5)
    problem = compare_tensor(actual.detach().to(expected.dtype), expected.detach(),
                             {k: v.detach() for k, v in (mistakes or {}).items()}, rtol=rtol, atol=atol)  # fmt: skip
    if problem:
        raise _fail(check, problem, hint)


def expect_scalar(actual, expected: float, check: str, mistakes: Mapping[str, float] | None = None, rel: float = 1e-6,
                  hint: str | None = None) -> None:  # fmt: skip
    """``actual`` (a number or a one-element tensor) must equal ``expected`` to relative precision ``rel``;
    ``mistakes`` as in :func:`expect_close`, with numbers."""
    if isinstance(actual, torch.Tensor):
        expect(actual.numel() == 1, check, f"expected a single number, got a tensor of shape {tuple(actual.shape)}",
               hint)  # fmt: skip
        actual = actual.item()
    expect(isinstance(actual, (int, float)), check, f"expected a number, got {type(actual).__name__}", hint)
    if abs(actual - expected) > rel * max(1.0, abs(expected)):
        for description, value in (mistakes or {}).items():
            if abs(actual - value) <= rel * max(1.0, abs(value)):
                raise _fail(check, f"got {actual:.6g}, which is {description}", hint)
    expect(abs(actual - expected) <= rel * max(1.0, abs(expected)), check, f"got {actual:.6g}, expected {expected:.6g}",
           hint)  # fmt: skip
