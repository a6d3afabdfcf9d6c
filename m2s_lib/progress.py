"""Progress bars that leave a true record, and the one rule for "is a live notebook front-end watching?".

``tqdm.auto`` draws an ipywidgets bar inside a kernel. Where no front-end runs the kernel (papermill, nbclient,
``nbconvert --execute``: ``make reproduce``, ``make test``), the executed notebook keeps only the widget's *view*
and, as its plain-text fallback, the bar as it was when first shown — "0%" — because headless executors do not
save widget state. The site and any viewer without the live kernel then show a bar that never moved.

:func:`progress_bar` is ``tqdm.auto.tqdm`` everywhere except in such a headless kernel, where it draws nothing
while it runs and prints its final state as one plain line when it closes (``leave=False`` bars print nothing):
the static record of what happened, e.g. ``epoch 3/12: 100%|██████████| 25/25 [00:04<00:00, 5.8batch/s]``.

:func:`frontend_attached` (also the rule of the notebook widgets, m2s_lib.teaching.widgets): widgets need a live
front-end, and there is none when

1. the environment variable ``M2S_WIDGETS`` says so (``static`` / ``interactive`` override everything else);
2. there is no IPython *kernel* (plain Python, pytest, terminal IPython); or
3. the kernel's current cell was sent with ``allow_stdin=False``. Jupyter front-ends (JupyterLab, Notebook,
   VS Code) send ``allow_stdin=True`` so that ``input()`` works; headless executors (nbclient, and so papermill
   and ``nbconvert --execute``) send ``False`` because nobody can answer. This reads ipykernel's
   ``kernel._allow_stdin``; a kernel without that attribute counts as interactive.
"""
from __future__ import annotations

import io
import os
import sys

__all__ = ["frontend_attached", "in_kernel", "progress_bar"]


def in_kernel() -> bool:
    """Whether this code runs inside an IPython kernel (a notebook, live or headless)."""
    module = sys.modules.get("IPython")
    shell = module.get_ipython() if module is not None and hasattr(module, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def frontend_attached() -> bool:
    """Whether interactive widgets can be used now (see the module docstring for the rule)."""
    env = os.environ.get("M2S_WIDGETS", "").strip().lower()
    if env in ("static", "0", "off", "false", "no"):
        return False
    if env in ("interactive", "1", "on", "true", "yes"):
        return True
    if not in_kernel():
        return False
    kernel = sys.modules["IPython"].get_ipython().kernel
    return getattr(kernel, "_allow_stdin", True) is not False


def _record_bar_class():
    from tqdm.std import tqdm as text_tqdm

    class RecordBar(text_tqdm):
        """Draws into a private buffer while running; prints its final line to stdout when it closes."""

        def __init__(self, *args, **kwargs):
            kwargs["file"] = io.StringIO()
            kwargs.pop("dynamic_ncols", None)
            kwargs.setdefault("ncols", 100)
            super().__init__(*args, **kwargs)

        def close(self) -> None:
            record = not self.disable and self.leave and not getattr(self, "_m2s_recorded", False)
            line = self.__str__() if record else ""
            self._m2s_recorded = True
            super().close()
            if line:
                print(line, flush=True)

    return RecordBar


def progress_bar(iterable=None, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, or in a kernel without a live front-end a bar that leaves one plain
    line with its final state (see the module docstring). Use it as tqdm: iterate it, or ``update``/``close`` it."""
    if in_kernel() and not frontend_attached():
        return _record_bar_class()(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
