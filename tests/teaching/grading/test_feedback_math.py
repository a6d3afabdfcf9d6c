"""The feedback page's maths renders offline: nbgrader's CDN MathJax 2 loader becomes a local MathJax 3 file."""
from pathlib import Path

import pytest

from m2s_lib.teaching.grading import results

NBGRADER_HEAD = """<style></style>
<!-- Load mathjax -->
<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe"> </script>
<!-- MathJax configuration -->
<script type="text/x-mathjax-config">
    init_mathjax = function() { MathJax.Hub.Config({tex2jax: {inlineMath: [ ['$','$'] ]}}); }
    init_mathjax();
    </script>
<!-- End of mathjax configuration -->
<p>Call $F_A$ and $F_B$ the feature maps.</p>
"""

pytestmark = pytest.mark.skipif(results.mathjax_source() is None, reason="sphinx-mathjax-offline is not installed")


def test_the_cdn_loader_becomes_a_local_copy(tmp_path: Path):
    page = results.offline_mathjax(NBGRADER_HEAD, tmp_path)
    assert "cdnjs" not in page and "x-mathjax-config" not in page and "init_mathjax" not in page
    assert "window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']]" in page
    assert page.endswith("<!-- End of mathjax configuration -->\n<p>Call $F_A$ and $F_B$ the feature maps.</p>\n")
    local = tmp_path / "mathjax" / results.MATHJAX_FILE
    assert local.read_bytes()[:200] == results.mathjax_source().read_bytes()[:200]
    assert results.offline_mathjax(page, tmp_path) == page  # already offline: unchanged


def test_a_page_without_mathjax_is_left_alone(tmp_path: Path):
    assert results.offline_mathjax("<p>no maths</p>", tmp_path) == "<p>no maths</p>"
    assert not (tmp_path / "mathjax").exists()
