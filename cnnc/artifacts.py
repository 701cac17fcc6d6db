"""Compiled-model artifacts: ``compiled.save(path)`` and ``cnnc.load(path)``.

    compiled = cnnc.compile(model, target="cpu")
    compiled.save("resnet20.cnnc")
    again = cnnc.load("resnet20.cnnc")     # same target, same optimised graph, no passes re-run

An artifact is a zip file holding three members (the format is described in
docs/RELIABILITY.md):

* ``manifest.json`` — ``format`` ("cnnc-artifact"), ``format_version``, ``cnnc_version``,
  ``target``, ``opt_level``, ``graph_name``, the member names and ``sha256``;
* ``graph.json`` — the optimised graph IR: inputs, nodes (op, operands, result name and type,
  attributes, layer) in schedule order, outputs;
* ``weights.npz`` — one array per constant (``c0``, ``c1``, ...), read with
  ``allow_pickle=False``.

``sha256`` covers ``graph.json`` and every weight (name, dtype, shape, bytes); :func:`load`
checks it before building anything. Nothing is ever unpickled. The graph is rebuilt through the
IR builder (every attribute normalised, every shape rule re-run) and verified, so even a file
with a matching hash cannot smuggle an ill-typed graph into a backend. Every failure raises a
:class:`~cnnc.errors.CnncError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np

from cnnc.errors import CnncError, ConfigError, ResourceError, UnsupportedError

FORMAT = "cnnc-artifact"
FORMAT_VERSION = 1
MANIFEST, GRAPH, WEIGHTS = "manifest.json", "graph.json", "weights.npz"
#: what zipfile, zlib, json and NumPy raise on damaged input (an encrypted or oddly compressed
#: member: RuntimeError / NotImplementedError)
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
                ValueError, KeyError, TypeError, UnicodeDecodeError, IndexError, AttributeError,
                RuntimeError, NotImplementedError)


# ---- encoding ------------------------------------------------------------------------------
def _enc_attr(v, where: str):
    """An attribute value as JSON: tuples become lists, non-finite floats ``{"float": "inf"}``."""
    if isinstance(v, (tuple, list)):
        return [_enc_attr(x, where) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise UnsupportedError(f"{where}: attribute value {v!r} ({type(v).__name__}) cannot be "
                           f"saved in an artifact")


def _dec_attr(v):
    if isinstance(v, list):
        return tuple(_dec_attr(x) for x in v)
    if isinstance(v, dict):
        if set(v) != {"float"} or v["float"] not in ("inf", "-inf", "nan"):
            raise ValueError(f"unexpected attribute object {v!r}")
        return float(v["float"])
    return v


def graph_to_json(graph) -> tuple[dict, dict[str, np.ndarray]]:
    """(the JSON document of ``graph``, its weights keyed ``c0``, ``c1``, ...)."""
    weights: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.nodes:
        t = node.output.type
        entry = {"op": node.op, "output": node.output.name, "shape": list(t.shape),
                 "dtype": t.dtype, "layer": node.layer}
        if node.op == "constant":
            key = f"c{len(weights)}"
            weights[key] = np.ascontiguousarray(node.data)
            entry["weight"] = key
        else:
            entry["inputs"] = [v.name for v in node.inputs]
            entry["attrs"] = {k: _enc_attr(v, node.describe()) for k, v in node.attrs.items()}
        nodes.append(entry)
    doc = {"name": graph.name,
           "inputs": [{"name": v.name, "shape": list(v.type.shape), "dtype": v.type.dtype}
                      for v in graph.inputs],
           "nodes": nodes,
           "outputs": [v.name for v in graph.outputs]}
    return doc, weights


def content_hash(graph_bytes: bytes, weights: dict[str, np.ndarray]) -> str:
    """SHA-256 over the graph document and every weight's name, dtype, shape and bytes."""
    h = hashlib.sha256(b"cnnc-artifact\0")
    h.update(len(graph_bytes).to_bytes(8, "little"))
    h.update(graph_bytes)
    for key in sorted(weights, key=lambda k: (len(k), k)):
        a = np.ascontiguousarray(weights[key])
        h.update(f"\0{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ---- save ----------------------------------------------------------------------------------
def save(compiled, path) -> str:
    """Write ``compiled`` (a CompiledModel) to ``path`` atomically; returns the path."""
    import cnnc
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"save expects a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConfigError(f"cannot save to {path!r}: it is a directory; give a file name "
                          f"such as 'model.cnnc'")
    doc, weights = graph_to_json(compiled.graph)
    graph_bytes = json.dumps(doc, sort_keys=True, allow_nan=False).encode()
    buf = io.BytesIO()
    np.savez(buf, **weights)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "cnnc_version": cnnc.__version__, "target": compiled.target,
                "opt_level": getattr(compiled, "opt_level", None),
                "graph_name": compiled.graph.name, "graph": GRAPH, "weights": WEIGHTS,
                "sha256": content_hash(graph_bytes, weights)}
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cnnc-save-", dir=folder)
    except OSError as e:
        raise CnncError(f"cannot save to {path!r}: {e}") from None
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w") as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True),
                       zipfile.ZIP_DEFLATED)
            z.writestr(GRAPH, graph_bytes, zipfile.ZIP_DEFLATED)
            z.writestr(WEIGHTS, buf.getvalue(), zipfile.ZIP_STORED)
        os.replace(tmp, path)
    except OSError as e:
        raise CnncError(f"cannot save to {path!r}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# ---- load ----------------------------------------------------------------------------------
def _read_members(path: str) -> tuple[dict, bytes, bytes]:
    from cnnc.backends.base import check_memory
    what = f"artifact {path!r}"
    if not os.path.exists(path):
        raise CnncError(f"{what} does not exist")
    if not os.path.isfile(path):
        raise CnncError(f"{what} is not a file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if MANIFEST not in names:
                raise CnncError(f"{what} is not a cnnc artifact (no {MANIFEST}; members "
                                f"{sorted(names)[:5]})")
            check_memory(sum(i.file_size for i in z.infolist()), f"loading {what}")
            manifest = json.loads(z.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise CnncError(f"{what}: {MANIFEST} does not describe a {FORMAT!r} file")
            version = manifest.get("format_version")
            if not isinstance(version, int) or isinstance(version, bool):
                raise CnncError(f"{what}: format_version must be an integer, got {version!r}")
            if version > FORMAT_VERSION or version < 1:
                raise UnsupportedError(f"{what} has format version {version} (written by cnnc "
                                       f"{manifest.get('cnnc_version')!r}); this cnnc reads "
                                       f"format versions 1 to {FORMAT_VERSION}")
            missing = {GRAPH, WEIGHTS} - names
            if missing:
                raise CnncError(f"{what} is missing member(s) {sorted(missing)}")
            return manifest, z.read(GRAPH), z.read(WEIGHTS)
    except (CnncError, ResourceError):
        raise
    except _READ_ERRORS as e:
        raise CnncError(f"{what} is corrupt or truncated ({type(e).__name__}: {e})") from None


def _read_weights(data: bytes, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            weights = {k: npz[k] for k in npz.files}
    except _READ_ERRORS as e:
        raise CnncError(f"{what}: {WEIGHTS} cannot be read safely ({type(e).__name__}: "
                        f"{e})") from None
    for k, a in weights.items():
        if a.dtype.kind not in "fiu" or a.dtype.fields is not None:
            raise CnncError(f"{what}: weight {k!r} has dtype {a.dtype}; expected float or int")
    return weights


def graph_from_json(doc: dict, weights: dict[str, np.ndarray], what: str = "graph"):
    """Rebuild the graph through the IR builder (attributes checked, shapes re-inferred)."""
    from cnnc.ir.graph import Graph
    from cnnc.ir.types import TensorType
    from cnnc.ir.verify import verify
    g = Graph(str(doc["name"]))
    values = {}
    for spec in doc["inputs"]:
        values[spec["name"]] = g.add_input(spec["shape"], spec["dtype"], spec["name"])
    for i, spec in enumerate(doc["nodes"]):
        want = TensorType(tuple(spec["shape"]), spec["dtype"])
        layer = spec.get("layer")
        if spec["op"] == "constant":
            arr = weights[spec["weight"]]
            v = g.constant(arr, name=spec["output"], layer=layer)
        else:
            operands = []
            for name in spec["inputs"]:
                if name not in values:
                    raise CnncError(f"{what}: node {i} ({spec['op']}) reads %{name}, which is "
                                    f"not defined before it")
                operands.append(values[name])
            attrs = {k: _dec_attr(a) for k, a in spec["attrs"].items()}
            v = g.add(spec["op"], operands, attrs, layer=layer)
            v.name = spec["output"]
        if v.type != want:
            raise CnncError(f"{what}: node {i} ({spec['op']}) %{spec['output']} is recorded as "
                            f"{want} but rebuilds as {v.type}")
        if spec["output"] in values:
            raise CnncError(f"{what}: value %{spec['output']} is defined twice")
        values[spec["output"]] = v
    g.set_outputs(*(values[name] for name in doc["outputs"]))
    g = g.copy()  # value counters follow the restored names
    verify(g, "artifact load")
    return g


def load(path, target: str | None = None):
    """Load an artifact written by ``compiled.save(path)`` and compile it for its target
    (``target`` may override it, e.g. "numpy" to inspect a cpu artifact anywhere)."""
    from cnnc.compile import TARGETS, compile_optimized
    from cnnc.passes.manager import PipelineReport
    from cnnc.passes.memory_plan import plan_memory
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"cnnc.load expects a file path, got {type(path).__name__}")
    path = os.fspath(path)
    what = f"artifact {path!r}"
    manifest, graph_bytes, weight_bytes = _read_members(path)
    weights = _read_weights(weight_bytes, what)
    digest = content_hash(graph_bytes, weights)
    if digest != manifest.get("sha256"):
        raise CnncError(f"{what} fails its integrity check: the content hash is {digest[:16]}... "
                        f"but the manifest records {str(manifest.get('sha256'))[:16]}... "
                        f"(the graph or the weights were modified)")
    saved_target = manifest.get("target")
    target = saved_target if target is None else target
    if target not in TARGETS[1:]:
        raise ConfigError(f"{what}: target must be one of {TARGETS[1:]}, got {target!r}")
    opt_level = manifest.get("opt_level")
    try:
        doc = json.loads(graph_bytes)
        graph = graph_from_json(doc, weights, what)
    except CnncError as e:
        raise type(e)(f"{what}: {e}" if what not in str(e) else str(e)) from None
    except (*_READ_ERRORS, RecursionError) as e:
        raise CnncError(f"{what}: {GRAPH} is malformed ({type(e).__name__}: {e})") from None
    report = PipelineReport(opt_level if opt_level in (0, 1, 2) else 2)
    report.plan = plan_memory(graph)
    return compile_optimized(graph, report, target)
