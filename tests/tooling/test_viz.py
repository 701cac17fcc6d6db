"""Pictures: DOT text content, SVG/PNG signatures, the fallback without any renderer."""

import re
import shutil

import pytest

import cnnc
from cnnc import viz
from cnnc.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_dot_labels_fold_weights_into_their_consumer():
    text = viz.to_dot(_optimised("resnet20"))
    assert 'label="conv2d_fused 3x3/1 16→16 [add,relu]\\nN×32×32×16"' in text
    assert 'label="conv2d_fused 3x3/2 16→32 [relu]\\nN×16×16×32"' in text
    assert 'label="dense 64→10\\nN×10"' in text
    # weights are not nodes, residuals are dashed edges, one box per computing node
    assert not re.search(r'^\s*"w\d+"', text, re.M)
    assert text.count("style=dashed") == 9
    assert len(re.findall(r'^\s*"\d+" \[label=', text, re.M)) == 23
    assert text.startswith('digraph "resnet20" {') and text.rstrip().endswith("}")


def test_side_by_side_has_both_clusters():
    g = cnnc.models.get("lenet5").to_graph()
    text = viz.to_dot_side_by_side(g, _optimised("lenet5"))
    assert "subgraph cluster_b" in text and "subgraph cluster_a" in text
    assert "before passes: 12 ops" in text and "after passes: 8 ops" in text
    assert '"b_0" [label="conv2d 5x5/1 1→6\\nN×28×28×6"' in text
    assert '"a_0" [label="conv2d_fused 5x5/1 1→6 [tanh]\\nN×28×28×6"' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_cli_viz_svg_through_graphviz(tmp_path):
    out = tmp_path / "g.svg"
    assert main(["viz", "resnet20", "--out", str(out), "--after-passes"]) == 0
    svg = out.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "conv2d_fused 3x3/1 64→64 [add,relu]" in svg
    assert "conv2d_fused" in (tmp_path / "g.dot").read_text(encoding="utf-8")


def test_png_through_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "g.png"
    d = viz.draw(cnnc.models.get("lenet5"), str(out), side_by_side=True, renderer="matplotlib")
    assert d.renderer == "matplotlib" and out.read_bytes()[:8] == PNG
    assert "before passes" in (tmp_path / "g.dot").read_text(encoding="utf-8")


def test_without_renderers_writes_dot_and_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    monkeypatch.setattr(viz, "_has_matplotlib", lambda: False)
    out = tmp_path / "g.svg"
    assert main(["viz", "lenet5", "--out", str(out)]) == 2   # the SVG asked for was not drawn
    msg = capsys.readouterr().err
    assert not out.exists() and (tmp_path / "g.dot").exists()
    assert "apt-get install graphviz" in msg and f"dot -Tsvg {tmp_path / 'g.dot'}" in msg
    assert 'pip install "cnnc[viz]"' in msg
    assert main(["viz", "lenet5", "--out", str(tmp_path / "only.dot")]) == 0  # DOT alone: ok


def test_bad_suffix_is_a_user_error(tmp_path, capsys):
    assert main(["viz", "lenet5", "--out", str(tmp_path / "g.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".jpg" in err


def _optimised(name):
    from cnnc.passes import optimize
    g = cnnc.models.get(name).to_graph()
    optimize(g, 2)
    return g
