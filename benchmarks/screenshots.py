"""Screenshots in headless Chromium (Debian's ``chromium``, driven by Playwright as m2s_lib/teaching/site_check.py does).

    python benchmarks/screenshots.py report --course COURSE          # COURSE/report-screenshot.png (the class report)
    python benchmarks/screenshots.py lab --course COURSE --out runs/screenshots

``lab``: released 01 as a student sees it in JupyterLab. ``COURSE`` must hold the student package
(``m2s course release`` without ``--no-package``): its wheel is unpacked into a scratch folder that alone is on
``PYTHONPATH`` (the repository is not: as on a student's machine, relative ``runs/`` paths resolve against the
notebook's folder). The teacher's tools are switched off as the student package's README says (formgrader and
create-assignment, in a private Jupyter config folder). Three copies of 01 are opened and run with *Run All*: the
stubs untouched, Exercise 1 wrong (the sum instead of |A − B|), Exercise 1 right; each is photographed at
Exercise 1's test cell (``01-stub.png``, ``01-wrong.png``, ``01-right.png``), and the stub copy also at its top
(``01-top.png``: the menus and the locked parameters cell).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
A01 = "01_subtraction_unit"
FLAGS = ["--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
DISABLED = {"@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True,
            "@jupyter/nbgrader:course-list": True,
            "@jupyterlab/apputils-extension:announcements": True}  # fmt: skip


def _chromium() -> str:
    from m2s_lib.teaching.site_check import find_chromium

    path = find_chromium()
    if not path:
        raise SystemExit("no chromium on the PATH (Debian: apt-get install chromium)")
    return path


def shoot_report(course: Path) -> Path:
    from playwright.sync_api import sync_playwright

    out = course / "report-screenshot.png"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=_chromium(), headless=True, args=FLAGS)
        page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        page.goto((course / "report.html").as_uri(), wait_until="load")
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out}")
    return out


# -------------------------------------------------------------------------------------------------------------
# JupyterLab
# -------------------------------------------------------------------------------------------------------------
def _gid(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def make_copies(course: Path, lab: Path) -> None:
    """``01-stub``, ``01-wrong``, ``01-right`` beside each other in ``lab`` (the student's folder)."""
    released = json.loads((course / "release" / A01 / f"{A01}.ipynb").read_text(encoding="utf-8"))
    master = json.loads((ROOT / "notebooks" / f"{A01}.ipynb").read_text(encoding="utf-8"))
    answer = next(c for c in master["cells"] if _gid(c) == "su_forward")
    right = re.sub(r" *### (BEGIN|END) SOLUTION\n?", "", _src(answer))
    wrong = right.replace("torch.abs(a - b)", "(a + b)")
    for name, code in (("stub", None), ("wrong", wrong), ("right", right)):
        nb = json.loads(json.dumps(released))
        if code is not None:
            next(c for c in nb["cells"] if _gid(c) == "su_forward")["source"] = code
        (lab / f"01-{name}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")


def student_environment(course: Path, scratch: Path) -> dict[str, str]:
    """The student package unpacked (alone on PYTHONPATH), a private Jupyter config with the teacher tools off."""
    wheels = sorted((course / "student").glob("m2s_lib-*.whl"))
    if not wheels:
        raise SystemExit(f"{course}/student has no wheel: release the course without --no-package")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extractall(scratch / "package")
    config = scratch / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": DISABLED}))
    settings = scratch / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    return {**os.environ, "PYTHONPATH": str(scratch / "package"), "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(scratch / "jupyter-data"),
            "JUPYTERLAB_SETTINGS_DIR": str(scratch / "lab-settings"), "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline"}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(lab: Path, env: dict[str, str], port: int, token: str) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={lab}", "--allow-root",
           "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.formgrader': False}",
           f"--LabApp.user_settings_dir={env['JUPYTERLAB_SETTINGS_DIR']}"]  # fmt: skip
    log = open(lab.parent / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=lab, env=env, stdout=log, stderr=subprocess.STDOUT)
    import urllib.request

    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"jupyter lab did not start; see {lab.parent / 'lab.log'}")


RUNNING = """() => Array.from(document.querySelectorAll('.jp-InputPrompt')).some(p => p.textContent.includes('*'))"""


def run_all_and_shoot(context, url: str, shots: dict[str, str | None], out: Path, timeout_s: float = 300) -> None:
    """Open ``url`` in a new page, Run All, wait for the kernel, then one screenshot per ``{file: text of the cell
    to show}`` (``None``: the top); the page is closed without its "leave the page?" dialog."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="load")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    started = ("() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))"
               ".some(p => /[0-9*]/.test(p.textContent))")  # fmt: skip
    for _ in range(3):  # the notebook must be the current widget for "Run All Cells" to apply to it
        page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(started, timeout=20_000)
            break
        except Exception:  # noqa: BLE001 — try again
            page.keyboard.press("Escape")
    deadline = time.time() + timeout_s
    while page.evaluate(RUNNING) and time.time() < deadline:
        page.wait_for_timeout(1000)
    page.wait_for_timeout(1500)
    for name, text in shots.items():
        if text is None:
            page.locator(".jp-Notebook .jp-Cell").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        else:
            cell = page.locator(".jp-Cell", has_text=text).last
            cell.scroll_into_view_if_needed()
            cell.evaluate("e => e.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(700)
        page.screenshot(path=str(out / name))
        print(f"wrote {out / name}")
    if "01-top.png" in shots:  # the menus a student has: nbgrader's, without the teacher's tools
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).click()
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "01-menu.png"))
        print(f"wrote {out / '01-menu.png'}")
        page.keyboard.press("Escape")
    page.close(run_before_unload=False)


def shoot_lab(course: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="m2s-lab-"))
    lab = scratch / "course"
    lab.mkdir()
    make_copies(course, lab)
    env = student_environment(course, scratch)
    port, token = _free_port(), secrets.token_hex(16)
    proc = start_lab(lab, env, port, token)
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=_chromium(), headless=True, args=FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            base = f"http://127.0.0.1:{port}/lab/workspaces"
            test = 'check("su_forward_tests"'
            for name in ("stub", "wrong", "right"):  # one workspace each: no tab of the previous one comes back
                shots = {f"01-{name}.png": test, **({"01-top.png": None} if name == "stub" else {})}
                run_all_and_shoot(context, f"{base}/{name}/tree/01-{name}.ipynb?reset&token={token}", shots, out)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("report", "lab"))
    p.add_argument("--course", required=True)
    p.add_argument("--out", default="runs/screenshots")
    args = p.parse_args(argv)
    course = Path(args.course).resolve()
    if args.what == "report":
        shoot_report(course)
    else:
        shoot_lab(course, (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
