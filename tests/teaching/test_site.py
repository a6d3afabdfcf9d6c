"""The course website (m2s_lib.teaching.site), its browser check, and the Colab/Binder badges + install cell.

The site is built from ``runs/tests/``, the executed notebooks that tests/test_notebooks.py writes (pytest runs
that file first: files run in alphabetical order). When none exist and the notebooks were not run in this session
(``pytest tests/test_site.py`` alone, a ``-k`` subset), the site tests skip with that reason; when the notebooks
did run in this session, or only some copies exist, missing copies fail. The browser test needs Chromium
(``apt-get install chromium``; ``.ci/run`` installs it): without one it skips, except under CI (``CI`` set), where
it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from m2s_lib.teaching import badges, nbcheck
from m2s_lib.teaching.site import MANIFEST, SiteError, build_site, figure_count
from m2s_lib.teaching.site_check import SiteCheckError, check_site, find_chromium

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
RUN = ROOT / "runs" / "tests"
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _chromium() -> str:
    chromium = find_chromium()
    if chromium is None:
        message = "no Chromium: `apt-get install chromium` (Debian) or set M2S_CHROMIUM"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it, so CI must have it", pytrace=False)
        pytest.skip(message)
    return chromium


# ---------------------------------------------------------------------------------------------------------------
# A small run folder made here: what the builder does with a notebook, without the real ones
# ---------------------------------------------------------------------------------------------------------------
def _fake_run(folder: Path) -> Path:
    """Two executed notebooks: one that would leave a file if run again, with a stored figure, an equation and a widget."""
    folder.mkdir(parents=True)
    figure = nbformat.v4.new_output("display_data", data={"image/png": PNG_1PX, "text/plain": "<Figure>"})
    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "epoch 1/1:   0%| | 0/1"})  # fmt: skip
    state = {"box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_label", "IPY_MODEL_bar"]}},
             "label": {"model_name": "HTMLModel", "state": {"value": "epoch 1/1: 100%"}},
             "bar": {"model_name": "FloatProgressModel", "state": {"value": 1, "max": 1}}}  # fmt: skip
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2}}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# 00 · First\n\nThe unit: $$MSU(A, B) = |A - B|$$ and $x^2$.\n\n"
            "Next: [the second](01_second.ipynb); [the model](../m2s_lib/model.py)."
        ),
        nbformat.v4.new_code_cell(
            f"open({str(folder / 'executed.txt')!r}, 'w')", outputs=[figure, widget], execution_count=1
        ),
    ]
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, folder / "00_first.ipynb")
    badges.sync_notebook(folder / "00_first.ipynb")  # like the real notebooks: badges and the install cell
    nb2 = nbformat.v4.new_notebook()
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=["ValueError: boom"])
    nb2.cells = [  # as papermill leaves a notebook whose cell failed: a banner above the title, an anchor above the cell
        nbformat.v4.new_markdown_cell(
            '<span>An Exception was encountered at <a href="#papermill-error-cell">In [1]</a>.</span>'
        ),
        nbformat.v4.new_markdown_cell("# 01 · Second\n\nBack to [the first](00_first.ipynb)."),
        nbformat.v4.new_markdown_cell('<span id="papermill-error-cell">Execution stopped here:</span>'),
        nbformat.v4.new_code_cell("raise ValueError('boom')", outputs=[error], execution_count=1),
    ]
    nbformat.write(nb2, folder / "01_second.ipynb")
    state = {"profile": "tiny", "started": "2026-01-01T10:00:00", "wall_s": 600.0,
             "notebooks": {"00_first.ipynb": {"status": "ok", "seconds": 12.3}}}  # fmt: skip
    (folder / "reproduce.json").write_text(json.dumps(state))
    report = "# R\n\n## Polyp results (notebook 07)\n\n| set | mDice |\n|---|---|\n| Kvasir | 0.9123 |\n\n## 00_first\n"
    (folder / "REPORT.md").write_text(report)
    (folder / "00_first").mkdir()
    (folder / "00_first" / "dot.png").write_bytes(__import__("base64").b64decode(PNG_1PX))
    (folder / "00_first" / "outputs.json").write_text(json.dumps([{"kind": "figure", "name": "dot", "files": ["dot.png"],
                                                                   "caption": "A dot"}]))  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory) -> tuple[Path, dict]:
    run = _fake_run(tmp_path_factory.mktemp("site") / "run")
    return build_site(run)


def test_site_uses_stored_outputs_without_executing(fake_site):
    site, manifest = fake_site
    page = (site / "notebooks" / "00_first.html").read_text()
    assert not (Path(manifest["run"]) / "executed.txt").exists()  # the cell that would write it never ran
    leftovers = [p.name for p in Path(manifest["run"]).iterdir() if p.name.startswith((".", "jupyter_execute"))]
    assert leftovers == []  # the run folder gains the site and nothing else
    assert [(p["title"], p["figures"], p["failed_cell"]) for p in manifest["pages"]] == [
        ("00 · First", 1, None), ("01 · Second", 0, 1)]  # fmt: skip
    assert manifest["mathjax"] == "local" and (site / "_static" / "mathjax" / "tex-svg-full.js").is_file()
    assert "data:image" not in page and "../_images/" in page  # figures are files, not base64
    assert "colab.research.google.com/assets" not in page and "../_images/colab.svg" in page  # local badge image
    assert page.count("<details") == 1 and "find_spec" in page  # the install cell is there, folded
    assert "<progress value='1' max='1'>" in page and "epoch 1/1: 100%" in page  # widget made static
    assert "https://github.com/" in page and "/blob/main/notebooks/00_first.ipynb" in page  # link to its source
    assert "/blob/main/m2s_lib/model.py" in page and 'href="01_second.html"' in page  # code on GitHub, pages local
    landing = (site / "index.html").read_text()
    assert "A dot" in landing and "has no executed copy of" in landing  # gallery; the real notebooks are missing
    assert "<td><p>0.9123</p></td>" in landing or "<td>0.9123</td>" in landing  # REPORT.md's polyp table
    assert "profile <code" in landing and "12 s" in landing  # reproduce.json: profile, time per notebook
    assert "error in cell 1, shown in place" in landing and "papermill-error-cell" not in landing
    assert json.loads((site / MANIFEST).read_text())["pages"][1]["html"] == "notebooks/01_second.html"


def test_site_refuses_bad_folders(tmp_path, fake_site):
    with pytest.raises(SiteError, match="does not exist"):
        build_site(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiteError, match="holds no executed notebooks"):
        build_site(tmp_path / "empty")
    (tmp_path / "mine").mkdir()
    with pytest.raises(SiteError, match="not a site built by m2s"):
        build_site(fake_site[1]["run"], out=tmp_path / "mine")
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())  # untouched


def test_cli_site_bad_run_is_one_line(tmp_path, capsys):
    from m2s_lib.cli import COMMAND_MODULES
    from m2s_lib.teaching.site import main

    assert "m2s_lib.cli.site" in COMMAND_MODULES  # `m2s site` runs this main
    assert main(["--run", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("site: run folder") and "\n" not in err


def test_page_problems_flag_tex_left_as_text():
    from m2s_lib.teaching.site_check import page_problems

    probe = {"images": [], "math": 2, "typeset": 2, "mathjax": True, "text": "the unit $$SU = |A - B|$$ again"}
    assert page_problems("p.html", probe, None) == ["p.html: TeX left as text: ...'the unit $$SU = |A - B|$$ again'..."]
    assert page_problems("p.html", {**probe, "text": "plain words"}, None) == []


def test_browser_check_catches_broken_pages(fake_site, tmp_path):
    """The check fails on a missing image, MathJax missing, and a broken link (and passes before the damage)."""
    chromium = _chromium()
    site = tmp_path / "site"
    shutil.copytree(fake_site[0], site)
    check_site(site, screenshots=tmp_path / "shots", chromium=chromium)  # intact: no problem
    page = site / "notebooks" / "00_first.html"
    image = next(p for p in (site / "_images").glob("*.png") if p.name in page.read_text())
    image.unlink()
    (site / "_static" / "mathjax" / "tex-svg-full.js").unlink()
    index = site / "index.html"
    index.write_text(index.read_text().replace("</article>", "<a href='notebooks/gone.html'>x</a></article>", 1))
    with pytest.raises(SiteCheckError) as err:
        check_site(site, screenshots=tmp_path / "shots", chromium=chromium)
    text = str(err.value)
    assert "notebooks/00_first.html: image did not load: " in text and image.name in text
    assert "shows 0 figure(s) in its outputs, the executed notebook has 1" in text
    assert "not typeset (MathJax did not load)" in text
    assert "index.html: broken link to notebooks/gone.html" in text


# ---------------------------------------------------------------------------------------------------------------
# The real course: runs/tests
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def course_site(request) -> tuple[Path, dict]:
    expected = [p.name for p in nbcheck.discover_notebooks(NOTEBOOK_DIR)]
    present = [name for name in expected if (RUN / name).is_file()]
    ran_here = any(item.nodeid.startswith("tests/test_notebooks.py::test_notebook_executes")
                   for item in request.session.items)  # fmt: skip
    if not present and not ran_here:
        pytest.skip(f"no executed notebooks in {RUN}: run tests/test_notebooks.py first (make test does)")
    missing = sorted(set(expected) - set(present))
    if missing:
        pytest.fail(f"{RUN} lacks the executed copies of {missing}: run `pytest tests/test_notebooks.py` "
                    "(their failures say why)", pytrace=False)  # fmt: skip
    site, manifest = build_site(RUN)
    print(f"site built in {manifest['seconds']:.1f} s: {site}")
    return site, manifest


def test_course_site_has_every_notebook(course_site):
    site, manifest = course_site
    stems = [p["stem"] for p in manifest["pages"]]
    assert stems == [p.stem for p in nbcheck.discover_notebooks(NOTEBOOK_DIR)] and len(stems) == 10
    assert manifest["missing"] == []
    for page in manifest["pages"]:
        executed = json.loads((RUN / page["file"]).read_text())
        assert page["figures"] == figure_count(executed)
        text = (site / page["html"]).read_text()
        assert text.count('src="../_images/') >= page["figures"], page["file"]
    assert sum(p["figures"] for p in manifest["pages"]) > 0
    assert all((site / d).is_file() for d in manifest["docs"]) and manifest["docs"]


def _absolute_paths(site: Path) -> list[str]:
    """``page: ...context...`` for every occurrence of the builder's repository path in a page of ``site``."""
    roots = {str(ROOT), str(ROOT.resolve())}
    found = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        for root in roots:
            found += [f"{page.relative_to(site)}: ...{text[max(0, at - 60) : at + 80]!r}..."
                      for at in (m.start() for m in re.finditer(re.escape(root), text))][:3]  # fmt: skip
    return found


def test_site_pages_show_repository_relative_paths(tmp_path):
    """A notebook that printed paths inside the repository (a run folder, a checkpoint) shows them relative to the
    repository root on the site; the builder's absolute path appears on no page."""
    run = _fake_run(tmp_path / "run")
    nb = nbformat.read(run / "00_first.ipynb", as_version=4)
    printed = f"checkpoints in {ROOT / 'runs' / 'x'}: pass checkpoint_path='{ROOT / 'runs' / 'x' / 'best.pt'}'\n"
    next(c for c in nb.cells if c.cell_type == "code" and c.outputs).outputs.append(
        nbformat.v4.new_output("stream", name="stdout", text=printed))
    nbformat.write(nb, run / "00_first.ipynb")
    site, _ = build_site(run)
    assert not _absolute_paths(site), _absolute_paths(site)
    page = (site / "notebooks" / "00_first.html").read_text()
    assert "checkpoints in runs/x: pass checkpoint_path=" in page and "runs/x/best.pt" in page


def test_course_site_shows_no_absolute_build_path(course_site):
    site, _ = course_site
    found = _absolute_paths(site)
    assert not found, f"{len(found)} absolute path(s) on the site:\n" + "\n".join(found[:20])


def test_course_site_in_headless_chromium(course_site):
    chromium = _chromium()
    site, manifest = course_site
    report = check_site(site, chromium=chromium)  # raises with every problem found
    names = {p.name for p in report.screenshots}
    assert {"landing.png", "08_feature_maps.png"} <= names, names
    for shot in report.screenshots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, shot
    assert sum(p["math"] for p in report.pages.values()) > 0  # equations were there, and all typeset
    print(report.summary())


# ---------------------------------------------------------------------------------------------------------------
# Badges and the install cell
# ---------------------------------------------------------------------------------------------------------------
def test_notebooks_have_badges_and_install_cell():
    problems = badges.badge_problems(NOTEBOOK_DIR)
    assert not problems, "\n".join(problems)


def test_badge_sync_keeps_papermill_runs_unchanged(tmp_path):
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    for nb in nbcheck.discover_notebooks(NOTEBOOK_DIR):
        shutil.copy(nb, tmp_path / nb.name)
    before = {p.name: nbcheck.parameter_names(p) for p in nbcheck.discover_notebooks(tmp_path)}
    badges.sync_notebooks(tmp_path)
    assert badges.sync_notebooks(tmp_path) == []  # idempotent
    assert badges.badge_problems(tmp_path) == []
    url = badges.repository_url()
    for path in nbcheck.discover_notebooks(tmp_path):
        assert nbcheck.parameter_names(path) == before[path.name]
        assert nbcheck.notebook_problems(path) == []
        nb = nbformat.read(path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells[:4]]
        assert tags[1:4] == [["badges"], ["install"], ["parameters"]], (path.name, tags)
        assert f"{url.removeprefix('https://github.com/')}/blob/main/notebooks/{path.name}" in nb.cells[1].source
        run = parameterize_notebook(load_notebook_node(str(path)), {"image_size": 32})  # papermill's own steps
        assert [c.metadata.get("tags", []) for c in run.cells[2:5]] == [["install"], ["parameters"],
                                                                       ["injected-parameters"]]  # fmt: skip


def test_nbcheck_lets_only_the_install_cell_precede_parameters(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 · T"), nbformat.v4.new_code_cell("import os"),
                nbformat.v4.new_code_cell("size = 3", metadata={"tags": ["parameters"]})]  # fmt: skip
    path = tmp_path / "00_t.ipynb"
    nbformat.write(nb, path)
    assert any("not tagged 'parameters'" in p and "'install'" in p for p in nbcheck.notebook_problems(path))
    assert nbcheck.parameter_names(path) == {}
    nb.cells[1].metadata["tags"] = ["install"]
    nbformat.write(nb, path)
    assert nbcheck.notebook_problems(path) == [] and nbcheck.parameter_names(path) == {"size": 3}


def test_install_cell_is_a_noop_when_m2s_lib_imports(monkeypatch, tmp_path):
    assert importlib.util.find_spec("m2s_lib") is not None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"the install cell ran {a}"))
    path = list(sys.path)
    exec(badges.install_source(), {})
    assert Path.cwd() == tmp_path and sys.path == path and not any(tmp_path.iterdir())


def test_install_cell_clones_and_installs_when_missing(monkeypatch, tmp_path):
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "m2s_lib" else real_find_spec(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(["chdir", path]))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(badges.install_source(), {})
    repo = str(tmp_path / "m2snet")
    assert calls == [
        ["git", "clone", "--depth", "1", "--branch", "main", badges.repository_url() + ".git", repo],
        [sys.executable, "-m", "pip", "install", "-q", "-e", repo],
        ["chdir", os.path.join(repo, "notebooks")],
    ]
    assert sys.path[0] == repo


def test_binder_builds_the_package_on_cpu_torch():
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in requirements and "torch" in requirements
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK) and 'pip install --no-cache-dir -c requirements-lock.txt -e ".[notebooks]"' in post.read_text()
    assert badges.binder_url("00_setup_and_data.ipynb").endswith("/main?labpath=notebooks%2F00_setup_and_data.ipynb")


def test_repository_url_must_be_a_github_repository(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "https://example.org/x"\n')
    with pytest.raises(ValueError, match=r"\[project.urls\] Repository must be https://github.com/OWNER/NAME"):
        badges.repository_url(bad)
    assert badges.repository_url().startswith("https://github.com/")
