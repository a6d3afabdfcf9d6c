"""The cheat corpus (issue 20): each cheat scores 0 on the exercise it attacks and is flagged with its technique;
an honest submission graded the same way keeps full marks.

Every submission runs in a real kernel (nbclient, ``M2S_GRADING_DIR`` set, the monitor installed first) and is
judged in this process, as the sandboxed runner does. Several cheats that attack different exercises share one
kernel (one submission), so the corpus costs five kernels. Under the old test cells (which judged inside the
kernel) the cheats below all scored full marks on the exercise they attack (issue 20's trial, and re-checked on
these submissions against the old cells: see the report of this change).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import exercise_support as es  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# -- 01 ------------------------------------------------------------------------------------------------------
SU_FROM_LIBRARY = """
from m2s_lib.subtraction import SubtractionUnit
lib = SubtractionUnit(self.conv.in_channels).to(a.dtype)
lib.conv[0].load_state_dict(self.conv.state_dict())
lib.conv[1].load_state_dict(self.bn.state_dict())
lib.train(self.training)
return lib(a, b)
"""
INT_SUBCLASS = """
class Zero(int):
    def __sub__(self, other):
        return 0
    __rsub__ = __sub__
return Zero(1)
"""
PATCHED_CHECKS = """
import torch.testing
import m2s_lib.teaching.checks as checks
torch.testing.assert_close = lambda *args, **kwargs: None
checks.expect_close = lambda *args, **kwargs: None
return a, b
"""
AST_WRAPPER = """
import ast
class Wrap(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(Wrap())
"""
# -- 02 ------------------------------------------------------------------------------------------------------
TENSOR_SUBCLASS = """
class Yes(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
return torch.zeros_like(x).as_subclass(Yes)
"""
EXEC_MASTER = """
import json, pathlib, m2s_lib
path = pathlib.Path(m2s_lib.__file__).parents[1] / "notebooks" / "02_multiscale_subtraction_unit.ipynb"
cells = json.loads(path.read_text())["cells"]
code = "".join("".join(c["source"]) for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "full_one_fast")
ns = {"torch": torch, "F": F}
exec(code, ns)
return ns["box_sum"](s, k)
"""
BUILTINS_PATCH = """
import builtins
builtins.sum = lambda *args, **kwargs: 0
return b
"""
# -- 03 ------------------------------------------------------------------------------------------------------
EXCEPTHOOK_AND_SYS_MODULES = """
import sys
sys.excepthook = lambda *args: None
route = getattr(sys.modules["m2s_lib.mmsm"], "MM" + "SM")
features = {ms_key(n - 1, i): v for i, v in previous.items()}
return {i: mmsm.units[unit_name(n, i)](*route.unit_inputs(mmsm, features, n, i)) for i in range(1, 7 - n)}
"""
BACKGROUND = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
if wiring == "official":
    ce[4] = ms[2, 4]
    ce[3] = fuse["CE3"](ms[2, 3] + ms[3, 3])
    ce[2] = fuse["CE2"](ms[2, 2] + ms[3, 2] + ms[4, 2])
    ce[1] = fuse["CE1"](ms[2, 1] + ms[3, 1] + ms[4, 1] + ms[5, 1])
else:
    ce[4] = fuse["CE4"](ms[1, 4] + ms[2, 4])
    ce[3] = fuse["CE3"](ms[1, 3] + ms[2, 3] + ms[3, 3])
    ce[2] = fuse["CE2"](ms[1, 2] + ms[2, 2] + ms[3, 2] + ms[4, 2])
    ce[1] = fuse["CE1"](ms[1, 1] + ms[2, 1] + ms[3, 1] + ms[4, 1] + ms[5, 1])
"""


def _verdict(tmp_path, key, **kwargs):
    verdict, executed = es.grade(es.submission(key, **kwargs), key, tmp_path)
    return {e.grade_id: e for e in verdict.exercises}, verdict, executed


def _flagged(exercise, technique: str) -> None:
    assert exercise.points == 0 and exercise.status == "flagged", (exercise.grade_id, exercise.points, exercise.status)
    assert any(f.startswith(technique) or f"monitor: {technique}" in f for f in exercise.flags), exercise.flags


def test_honest_submission_keeps_full_marks(tmp_path):
    by_id, verdict, executed = _verdict(tmp_path, "01")
    assert {k: e.points for k, e in by_id.items()} == es.full("01")
    assert all(not e.flags and e.status == "graded" for e in by_id.values()), [e.flags for e in by_id.values()]
    assert verdict.flags == []  # own words in the hand-graded answers
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors


def test_cheats_on_01_import_int_subclass_patched_checks(tmp_path):
    by_id, verdict, _ = _verdict(tmp_path, "01", paste_model=True, answers={
        "su_forward": SU_FROM_LIBRARY, "su_param_count": INT_SUBCLASS, "fusion_parts": PATCHED_CHECKS})
    _flagged(by_id["su_forward_tests"], "reference")  # 1. the library's implementation, imported
    _flagged(by_id["su_param_count_tests"], "fools comparisons")  # 4a. an int subclass whose __sub__ is 0
    assert any("Zero, a subclass of int" in f for f in by_id["su_param_count_tests"].flags)
    _flagged(by_id["fusion_parts_tests"], "patching")  # 2. check helpers and assert_close made no-ops
    assert any("torch.testing.assert_close" in f for f in by_id["fusion_parts_tests"].flags)
    assert not by_id["fusion_parts_tests"].checks[0].passed  # the patch changed nothing about the verdict
    assert any("model answer" in f for f in verdict.flags)  # model answers pasted into the hand-graded cells


def test_cheat_ast_transformer_wrapping_every_cell(tmp_path):
    by_id, _, _ = _verdict(tmp_path, "01", stubs=True, cells=[("imports", AST_WRAPPER)])
    for exercise in by_id.values():  # 3. untouched stubs behind a try/except wrapper
        _flagged(exercise, "patching")
        assert any("ast_transformers" in f for f in exercise.flags)
        assert all(c.mistake and "not done" in c.mistake for c in exercise.checks)


def test_cheats_on_02_tensor_subclass_exec_of_master_builtins(tmp_path):
    by_id, _, _ = _verdict(tmp_path, "02", answers={
        "full_one_dense": TENSOR_SUBCLASS, "full_one_fast": [EXEC_MASTER, None], "msu_forward": BUILTINS_PATCH})
    _flagged(by_id["full_one_dense_tests"], "fools comparisons")  # 4b. __torch_function__ answers allclose True
    fast = by_id["full_one_fast_tests"]  # 5. the master's solution cell read from disk and exec'd
    _flagged(fast, "exec of a string")
    assert any(f.startswith("reads files") for f in fast.flags)
    assert all(c.passed for c in fast.checks)  # the outputs were right: only the flag takes the points
    _flagged(by_id["msu_forward_tests"], "patching")  # builtins patched
    assert any("builtins" in f for f in by_id["msu_forward_tests"].flags)


def test_cheats_on_03_excepthook_sys_modules_background_process(tmp_path):
    by_id, _, _ = _verdict(tmp_path, "03", answers={
        "pyramid_order": EXCEPTHOOK_AND_SYS_MODULES, "ce_sums": BACKGROUND})
    pyramid = by_id["pyramid_order_tests"]
    _flagged(pyramid, "patching")  # sys.excepthook
    assert any("sys.excepthook" in f for f in pyramid.flags)
    assert any(f.startswith("dynamic import") and "sys.modules" in f for f in pyramid.flags)
    assert any("MMSM.unit_inputs ran" in f for f in pyramid.flags), pyramid.flags  # the in-kernel monitor saw it
    _flagged(by_id["ce_sums_tests"], "background process")
    assert all(c.passed for c in by_id["ce_sums_tests"].checks)


# -- the static scan, route by route (no kernel) --------------------------------------------------------------
ROUTES = [
    ("from m2s_lib.subtraction import SubtractionUnit as S", "reference"),
    ("import m2s_lib.subtraction as s\ny = s.SubtractionUnit", "reference"),
    ("import importlib\nm = importlib.import_module('m2s_lib.subtraction')", "dynamic import"),
    ("m = __import__('m2s_lib.subtraction')", "dynamic import"),
    ("import m2s_lib.subtraction as s\nk = getattr(s, 'Sub' + 'tractionUnit')", "dynamic import"),
    ("import sys\nm = sys.modules['m2s_lib.subtraction']", "dynamic import"),
    ("f = globals()['Subtraction' + 'Unit']", "dynamic import"),
    ("exec('x = 1')", "exec of a string"),
    ("y = eval('1 + 1')", "exec of a string"),
    ("c = compile('x = 1', 'f', 'exec')", "exec of a string"),
    ("text = open('notebooks/01_subtraction_unit.ipynb').read()", "reads files"),
    ("import pathlib\nt = pathlib.Path('x').read_text()", "reads files"),
    ("import inspect, m2s_lib.subtraction as s\nt = inspect.getsource(s)", "reads files"),
    ("import m2s_lib\np = m2s_lib.__file__", "reads files"),
    ("import torch\ntorch.testing.assert_close = lambda *a, **k: None", "patching"),
    ("import m2s_lib.teaching.exercises as ex\nex.check = print", "patching"),
    ("import builtins\nbuiltins.abs = lambda x: x", "patching"),
    ("import sys\nsys.excepthook = print", "patching"),
    ("get_ipython().ast_transformers.append(object())", "patching"),
    ("get_ipython().input_transformers_post.append(str)", "patching"),
    ("get_ipython().events.register('post_run_cell', print)", "patching"),
    ("import torch\nsetattr(torch, 'allclose', lambda *a, **k: True)", "patching"),
    ("!sleep 100 &", "patching"),  # IPython's shell escape becomes get_ipython().system(...)
    ("import subprocess\nsubprocess.Popen(['sleep', '100'])", "background process"),
    ("import os\npid = os.fork()", "background process"),
    ("import os\nos.system('sleep 100 &')", "background process"),
    ("import multiprocessing\nmultiprocessing.Process(target=print).start()", "background process"),
    ("import atexit\natexit.register(print)", "background process"),
    ("class Z(int):\n    pass", "fools comparisons"),
    ("import numpy as np\nnp.savez('x.npz', out=1)", "writes files"),
    ("import os\nd = os.environ['M2S_GRADING_DIR']", "patching"),
    ("import pathlib\npathlib.Path('g/outputs/x.npz').write_bytes(b'')", "writes files"),
    ("class T:\n    def __eq__(self, other):\n        return True", "fools comparisons"),
]


@pytest.mark.parametrize("source,technique", ROUTES, ids=[f"{t}-{i}" for i, (_, t) in enumerate(ROUTES)])
def test_scan_names_the_route(source, technique):
    from m2s_lib.teaching.grading import scan

    found = scan.scan_source(source, {"SubtractionUnit"})
    assert technique in {f.technique for f in found}, found


def test_scan_leaves_honest_code_alone():
    from m2s_lib.teaching.grading import scan

    honest = '''
"""Uses SubtractionUnit's idea, written by hand."""
import warnings
a = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
self.total = torch.zeros_like(b)
for m in self.modules():
    pass
out = {i: mmsm.units[unit_name(n, i)](previous[i + 1], previous[i]) for i in range(1, 7 - n)}
'''
    assert scan.scan_source(honest, {"SubtractionUnit"}, {"torch", "F"}) == []


# -- the judge trusts nothing the kernel wrote but plain numbers --------------------------------------------------
def test_judge_refuses_pickles_and_survives_rewritten_inputs(tmp_path):
    import json

    import numpy as np

    from m2s_lib.teaching.grading import judge

    grading = tmp_path / "grading"
    ns = es.namespace("01")
    es.record("01", es.answers_of("01", ns), tmp_path)  # honest outputs in grading/outputs
    for path in (grading / "inputs").glob("*.npz"):  # the kernel rewrote the inputs: cases are regenerated
        np.savez(path, nothing=np.zeros(1))
    verdict = judge.judge_assignment("01", grading, es.master("01"))
    assert {e.grade_id: e.points for e in verdict.exercises} == es.full("01")
    np.savez(grading / "outputs" / "su_forward_tests.npz", **{"0/out": np.array([object()], dtype=object)})
    record = json.loads((grading / "outputs" / "fusion_parts_tests.json").read_text())
    record["cases"] = "not a list"
    (grading / "outputs" / "fusion_parts_tests.json").write_text(json.dumps(record))
    (grading / "outputs" / "su_param_count_tests.json").unlink()
    by_id = {e.grade_id: e for e in judge.judge_assignment("01", grading, es.master("01")).exercises}
    assert by_id["su_forward_tests"].points == 0 and any("unreadable" in f for f in by_id["su_forward_tests"].flags)
    assert by_id["fusion_parts_tests"].points == 0
    assert by_id["su_param_count_tests"].status == "not reached" and by_id["su_param_count_tests"].points == 0


def test_a_later_cell_rewriting_the_recorded_outputs_is_flagged():
    """A cell after the test cell that overwrites the recorded outputs with the library's values: the reference
    use alone comes after the test (not flagged by position), but writing the grader's files is."""
    from m2s_lib.teaching.exercises import registry
    from m2s_lib.teaching.grading import scan

    rewrite = """
import os, numpy as np
folder = os.environ["M2S_GRADING_DIR"]
np.savez(folder + "/outputs/su_forward_tests.npz", **{"0/out": SubtractionUnit(8)(a, b).detach().numpy()})
"""
    nb = es.submission("01", cells=[("su_forward_tests", rewrite)])
    flags = scan.scan_notebook(nb, registry.exercises("01"), es.master("01"))
    assert any(f.startswith("writes files") for f in flags["su_forward_tests"]), flags
    assert any("M2S_" in f or "environ" in f for f in flags["su_forward_tests"])
