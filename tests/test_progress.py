"""m2s_lib.progress: bars that leave their final state as plain text where no front-end keeps widget state."""
from __future__ import annotations

import types

import pytest

from m2s_lib import progress


def _shell(allow_stdin):
    return types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=allow_stdin))


def test_outside_a_kernel_it_is_tqdm_auto(capsys):
    from tqdm.auto import tqdm

    bar = progress.progress_bar(range(3), desc="plain")
    assert type(bar) is tqdm
    list(bar)


@pytest.fixture
def headless(monkeypatch):
    import IPython

    monkeypatch.delenv("M2S_WIDGETS", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: _shell(False))  # what papermill / nbclient gives


def test_headless_kernel_prints_one_final_line(headless, capsys):
    bar = progress.progress_bar(range(5), desc="epoch 1/2", unit="batch")
    for _ in bar:
        assert capsys.readouterr().out == ""  # nothing while it runs
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("epoch 1/2: 100%") and "5/5" in out, out
    bar.close()  # closing twice records once
    assert capsys.readouterr().out == ""
    with progress.progress_bar(total=4, desc="manual") as manual:
        manual.update(3)
    assert "manual:  75%" in capsys.readouterr().out
    for kwargs in ({"leave": False}, {"disable": True}):
        list(progress.progress_bar(range(2), **kwargs))
        assert capsys.readouterr().out == "", kwargs


def test_live_frontend_keeps_the_widget_bar(monkeypatch):
    import IPython

    monkeypatch.delenv("M2S_WIDGETS", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: _shell(True))
    assert progress.frontend_attached() and progress.in_kernel()
    bar = progress.progress_bar(range(2), disable=True)
    assert "RecordBar" not in type(bar).__name__


def test_executed_notebook_keeps_the_final_state(tmp_path):
    """Under papermill (no front-end, no widget state saved), the executed cell holds the bar's last state as text,
    not a widget whose fallback text is the bar at 0 %."""
    nbformat = pytest.importorskip("nbformat")
    papermill = pytest.importorskip("papermill")
    from m2s_lib.teaching.reproduce import kernel_transport

    code = "from m2s_lib.progress import progress_bar\nfor _ in progress_bar(range(7), desc='demo'):\n    pass"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               progress_bar=False, config=kernel_transport(tmp_path))
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.startswith("demo: 100%") and "7/7" in text, outputs
