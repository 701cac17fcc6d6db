"""``compiled.save(path)`` / ``cnnc.load(path)``: exact round trips, and every damaged, tampered
or foreign file refused with a CnncError (nothing is ever unpickled)."""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import cnnc
from cnnc import artifacts
from cnnc.errors import CnncError, UnsupportedError


def _x(n=3, seed=5):
    return np.random.default_rng(seed).standard_normal((n, 6, 6, 2)).astype(np.float32)


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


@pytest.fixture(scope="module")
def saved(compiled, tmp_path_factory):
    path = tmp_path_factory.mktemp("art") / "small.cnnc"
    assert compiled["numpy"].save(path) == str(path)
    return path


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_round_trip_is_exact(compiled, tmp_path, target):
    c = compiled[target]
    path = tmp_path / f"m-{target}.cnnc"
    c.save(path)
    again = cnnc.load(path)
    assert again.target == target and again.opt_level == 2
    assert str(again.graph) == str(c.graph)
    assert again.source() == c.source()
    for n in (1, 4):
        np.testing.assert_array_equal(again(_x(n)), c(_x(n)))


def test_load_for_another_target(compiled, tmp_path):
    path = tmp_path / "cpu.cnnc"
    compiled["cpu"].save(path)
    ref = cnnc.load(path, target="numpy")
    assert ref.target == "numpy"
    np.testing.assert_allclose(ref(_x()), compiled["cpu"](_x()), rtol=1e-5, atol=1e-5)
    with pytest.raises(cnnc.ConfigError, match="'tpu'"):
        cnnc.load(path, target="tpu")


def test_manifest_documents_the_file(saved):
    m = json.loads(_members(saved)["manifest.json"])
    assert m["format"] == "cnnc-artifact" and m["format_version"] == artifacts.FORMAT_VERSION
    assert m["cnnc_version"] == cnnc.__version__ and m["target"] == "numpy"
    assert m["opt_level"] == 2 and len(m["sha256"]) == 64


def test_tampered_weights_are_detected(saved, tmp_path):
    members = _members(saved)
    with np.load(io.BytesIO(members["weights.npz"])) as npz:
        weights = {k: npz[k].copy() for k in npz.files}
    weights["c0"].flat[0] += 1e-3
    buf = io.BytesIO()
    np.savez(buf, **weights)
    members["weights.npz"] = buf.getvalue()
    _write(tmp_path / "t.cnnc", members)
    with pytest.raises(CnncError, match="integrity check.*modified"):
        cnnc.load(tmp_path / "t.cnnc")


def test_tampered_ir_is_detected(saved, tmp_path):
    members = _members(saved)
    members["graph.json"] = members["graph.json"].replace(b'"relu"', b'"sigmoid"')
    _write(tmp_path / "t.cnnc", members)
    with pytest.raises(CnncError, match="integrity check"):
        cnnc.load(tmp_path / "t.cnnc")


def test_consistent_but_ill_typed_ir_is_refused(saved, tmp_path):
    """A forged file whose hash matches still goes through the builder and the verifier."""
    members = _members(saved)
    doc = json.loads(members["graph.json"])
    op = next(n for n in doc["nodes"] if n["op"] != "constant")
    op["shape"][-1] += 1
    members["graph.json"] = json.dumps(doc).encode()
    with np.load(io.BytesIO(members["weights.npz"])) as npz:
        weights = {k: npz[k] for k in npz.files}
    manifest = json.loads(members["manifest.json"])
    manifest["sha256"] = artifacts.content_hash(members["graph.json"], weights)
    members["manifest.json"] = json.dumps(manifest).encode()
    _write(tmp_path / "t.cnnc", members)
    with pytest.raises(CnncError, match="recorded as .* but rebuilds as"):
        cnnc.load(tmp_path / "t.cnnc")


class _Boom:
    """Unpickling this would create a file: it must never happen."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_weights_are_never_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"
    members = _members(saved)
    buf = io.BytesIO()
    np.savez(buf, c0=np.array([_Boom(str(marker))], dtype=object))
    members["weights.npz"] = buf.getvalue()
    members["graph.pkl"] = pickle.dumps(_Boom(str(marker)))
    _write(tmp_path / "t.cnnc", members)
    with pytest.raises(CnncError, match="cannot be read safely"):
        cnnc.load(tmp_path / "t.cnnc")
    assert not marker.exists()


def test_future_version_is_refused(saved, tmp_path):
    members = _members(saved)
    manifest = json.loads(members["manifest.json"])
    manifest["format_version"] = artifacts.FORMAT_VERSION + 1
    members["manifest.json"] = json.dumps(manifest).encode()
    _write(tmp_path / "t.cnnc", members)
    with pytest.raises(UnsupportedError, match=r"format version 2.*reads format versions 1 to 1"):
        cnnc.load(tmp_path / "t.cnnc")


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -20, -1])
def test_truncated_files_are_refused(saved, tmp_path, cut):
    data = saved.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut if cut >= 0 else len(data) + cut
    (tmp_path / "t.cnnc").write_bytes(data[:n])
    with pytest.raises(CnncError):
        cnnc.load(tmp_path / "t.cnnc")


def test_foreign_or_missing_files(saved, tmp_path):
    with pytest.raises(CnncError, match="does not exist"):
        cnnc.load(tmp_path / "nope.cnnc")
    with pytest.raises(CnncError, match="not a file"):
        cnnc.load(tmp_path)
    with pytest.raises(cnnc.ConfigError, match="path.*int"):
        cnnc.load(3)
    _write(tmp_path / "other.zip", {"hello.txt": b"hi"})
    with pytest.raises(CnncError, match="not a cnnc artifact"):
        cnnc.load(tmp_path / "other.zip")
    members = _members(saved)
    del members["weights.npz"]
    _write(tmp_path / "t.cnnc", members)
    with pytest.raises(CnncError, match=r"missing member.*weights.npz"):
        cnnc.load(tmp_path / "t.cnnc")


def test_save_errors(compiled, tmp_path):
    with pytest.raises(cnnc.ConfigError, match="directory"):
        compiled["numpy"].save(tmp_path)
    with pytest.raises(CnncError, match="cannot save"):
        compiled["numpy"].save(tmp_path / "no" / "such" / "dir.cnnc")
    assert list(tmp_path.iterdir()) == []  # no temporary left behind
