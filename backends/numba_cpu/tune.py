"""Autotuning of the convolution plans on this machine, with a per-machine cache.

``cnnc tune MODEL`` and ``cnnc.compile(model, target="cpu", tune=True)`` time a bounded set
of candidate plans (:func:`candidates`: register tile, loop order, loop vectorizer, direct or
Winograd) for every distinct conv spec of the model, on this machine, and store the winners
in ``<cache>/tuning/<machine>.json``.  The file is named by, and records, what the timings
depend on (:func:`machine`: the effective LLVM CPU name and features, the Numba and llvmlite
versions), so every later compile on this machine takes them (:func:`lookup`, called by
:func:`convgen.plan`) and another machine never does.  A spec's entry ignores its epilogue
(bias, activation, residual: one pass over the output, the same for every plan).

A corrupt or foreign file is ignored with a :class:`TuningWarning` (the next tune rewrites
it); ``CNNC_TUNED=0`` in the environment ignores the cache altogether.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from cnnc.backends.numba_cpu import convgen, target, winograd
from cnnc.backends.numba_cpu.convgen import ConvSpec, Plan

#: 2: plans carry the Winograd tile side (F(2x2) or F(4x4)); files of format 1 are re-tuned
FORMAT = 2
#: seconds of timed calls per candidate and round; rounds interleave the candidates so that
#: drift on a shared machine hits them alike
SECONDS = 0.05
ROUNDS = 3
#: seconds of untimed calls before a spec's candidates are timed (see :func:`warm`)
WARM = 0.3
#: seconds to wait after a candidate that calls BLAS: OpenBLAS's workers spin ~0.1 s after a
#: call and slowed the next candidate's parallel loops 2.7x (1741 instead of 645 us)
BLAS_SETTLE = 0.15


class TuningWarning(UserWarning):
    """The tuning cache could not be used (it is ignored)."""


def machine() -> dict:
    """What a tuned plan depends on: the effective LLVM target, the compiler versions and the
    OpenBLAS kernels that plans calling BLAS run (``OPENBLAS_CORETYPE`` can hold an AVX-512
    CPU to the AVX2 ones, at half the GEMM rate)."""
    import llvmlite
    import numba

    from cnnc.profile import blas_coretype
    cpu = target.effective()
    return {"format": FORMAT, "cpu": cpu.name, "features": cpu.features,
            "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "blas": blas_coretype()}


def path(m: dict | None = None) -> str:
    from cnnc.backends.numba_cpu.runtime import cache_dir
    m = m or machine()
    digest = hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:20]
    return os.path.join(cache_dir(), "tuning", f"{m['cpu'] or 'cpu'}-{digest}.json")


def spec_key(spec: ConvSpec) -> str:
    s = spec
    return (f"{s.h}x{s.w}x{s.cin} k{s.kh}x{s.kw} cout{s.cout} s{s.stride[0]},{s.stride[1]} "
            f"p{','.join(map(str, s.pads))} d{s.dilation[0]},{s.dilation[1]} g{s.groups}")


_memo: dict[str, tuple[float, dict]] = {}   # path -> (mtime, entries)


def load(m: dict | None = None) -> dict[str, dict]:
    """The stored entries {spec key: {"plan": ..., "us": ...}} for machine ``m``; empty
    when there is no file, and (with a warning) when it is corrupt or another machine's."""
    m = m or machine()
    p = path(m)
    try:
        mtime = os.stat(p).st_mtime
    except OSError:
        return {}
    if p in _memo and _memo[p][0] == mtime:
        return _memo[p][1]
    entries: dict = {}
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("plans"), dict):
            raise ValueError("no 'plans' table")
        if data.get("machine") != m:
            warnings.warn(f"cnnc: ignoring tuning file {p}: it was written for another machine "
                          f"or compiler ({data.get('machine')})", TuningWarning, stacklevel=2)
        else:
            entries = {k: v for k, v in data["plans"].items() if _plan_of(v) is not None}
    except (OSError, ValueError, TypeError) as e:
        warnings.warn(f"cnnc: ignoring corrupt tuning file {p} ({e}); `cnnc tune` rewrites "
                      f"it", TuningWarning, stacklevel=2)
    _memo[p] = (mtime, entries)
    return entries


def _plan_of(entry) -> Plan | None:
    try:
        pl = Plan(**entry["plan"])
    except (TypeError, KeyError):
        return None
    ok = (pl.strategy in ("blocked", "winograd") and isinstance(pl.cb, int)
          and isinstance(pl.p, int) and pl.cb >= 1 and pl.p >= 1)
    return pl if ok else None


def lookup(spec: ConvSpec, cpu=None) -> Plan | None:
    """The tuned plan of ``spec`` on this machine, if ``cnnc tune`` stored one (and only when
    plans are made for this machine's own target, see :func:`target.plan_for`)."""
    if os.environ.get("CNNC_TUNED", "1").strip() == "0":
        return None
    if cpu is not None and cpu != target.effective():
        return None
    entry = load().get(spec_key(spec))
    if entry is None:
        return None
    pl = _plan_of(entry)
    if pl.strategy == "winograd" and not (winograd.ENABLED and winograd.applies(spec)):
        return None
    if pl.strategy == "blocked" and spec.groups > 1 and (spec.cout // spec.groups) % pl.cb:
        return None
    return pl


def store(results: dict[str, dict], m: dict | None = None) -> str:
    """Merge ``results`` into this machine's file (written atomically)."""
    m = m or machine()
    p = path(m)
    entries = dict(load(m))
    entries.update(results)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    tmp = f"{p}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"machine": m, "plans": entries}, f, indent=1, sort_keys=True)
    os.replace(tmp, p)
    return p


# ---- candidates ------------------------------------------------------------------------------
#: the most tile values LLVM unrolls into registers with the loop vectorizer on
UNROLLED = 64


def candidates(spec: ConvSpec, cpu=None) -> list[Plan]:
    """The default plan first, then a bounded set of alternatives (at most 7): neighbouring
    register tiles within the register file, the other loop order, the loop vectorizer
    switched (where the tile can still be unrolled), and Winograd where it applies and the
    layer is large enough for it to pay: the default tile side, and the other one where a row
    has F(4x4)'s tiles.  Depthwise specs have one plan."""
    cpu = cpu or target.effective()
    base = convgen.plan(spec, cpu, tuned=False)
    if base.strategy == "depthwise":
        return [base]
    out = [base]

    def add(pl):
        if pl not in out:
            out.append(pl)

    blocked = base if base.strategy == "blocked" else convgen.plan(
        spec, cpu, tuned=False, winograd_ok=False)
    if base.strategy != "blocked":
        add(blocked)
    cout_g = spec.cout // spec.groups
    lanes = cpu.lanes
    tiles = [(blocked.cb, blocked.p - 1), (blocked.cb, blocked.p + 1),
             (lanes, convgen.pixel_range(lanes, cpu, spec)[1]),
             (2 * lanes, convgen.pixel_range(2 * lanes, cpu, spec)[0])]
    for cb, p in tiles:
        fits = (1 <= p <= min(spec.out_hw[1], convgen.pixel_range(cb, cpu, spec)[1])
                and cb <= max(cout_g, lanes))
        if fits and (spec.groups == 1 or cout_g % cb == 0):
            add(dataclasses.replace(blocked, cb=cb, p=p))
    add(dataclasses.replace(blocked, cb_outer=not blocked.cb_outer))
    # the loop vectorizer switched on for a tile of more than UNROLLED values leaves it in
    # memory (convgen): 14 px x 32 ch ran 45 ms instead of 0.6, not worth a 1.5 s compile
    switched = dataclasses.replace(blocked, loop_vectorize=not blocked.loop_vectorize)
    if not switched.loop_vectorize or switched.p * switched.cb <= UNROLLED:
        add(switched)
    # Winograd where it can pay (in the default plan's loop order, winograd.default_plan;
    # one candidate keeps `cnnc tune resnet18` near 2 minutes)
    if winograd.ENABLED and winograd.applies(spec) and winograd.large_enough(spec):
        wino = winograd.default_plan(spec, cpu)
        add(wino)
        # and the other tile side, where F(4x4) has its tiles (on AVX-512 at full rate not on
        # 7x7 or 8x8 outputs, where it lost 0.46-0.88x: `cnnc tune resnet18` stays near 2 min)
        if winograd.f4_has_tiles(spec, cpu):
            add(winograd.default_plan(spec, cpu, 2 if wino.wino == 4 else 4))
    return out[:8]


# ---- timing ----------------------------------------------------------------------------------
def build(spec: ConvSpec, pl: Plan, batch: int = 1, seed: int = 0):
    """A zero-argument callable running the conv of ``spec`` with plan ``pl`` on a random
    batch as a compiled model runs it (the padded copy included), compiled as cnnc compiles
    it (the loop vectorizer per ``pl.loop_vectorize``); called once, so compiled.  An
    epilogue may hold activations only (benchmarks/epilogue.py times them)."""
    from numba import njit
    from cnnc.backends.numba_cpu.kernels import compile_tail
    from cnnc.backends.numba_cpu.lower import PRELUDE
    from cnnc.backends.numba_cpu.runtime import loop_vectorizer
    from cnnc.ops.fused import num_extras
    if num_extras(spec.epilogue):
        raise ValueError("tune.build takes no epilogue step with operands (scale_shift, add)")
    ns: dict = {}
    exec(PRELUDE, ns)
    # a tail function is cached by its module's file; this source has none
    exec(convgen.generate(spec, "kernel", pl).replace("cache=True", "cache=False"), ns)
    exec(convgen.PAD_COPY.replace("__KERNEL__", "pad_copy"), ns)
    opts = dict(fastmath=ns["FASTMATH"], error_model="numpy")
    fn = njit(parallel=True, **opts)(ns["kernel"])
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((spec.kh, spec.kw, spec.cin // spec.groups, spec.cout), np.float32)
    oh, ow = spec.out_hw
    x = rng.standard_normal((batch, spec.h, spec.w, spec.cin)).astype(np.float32)
    out = np.empty((batch, oh, ow, spec.cout), np.float32)
    args = [x, convgen.pack_weights(spec, w, pl), np.zeros(spec.cout, np.float32), out]
    extra = convgen.scratch_elements(spec, pl)
    pre = None
    if h := convgen.halo(spec, pl):
        xp = np.empty((batch, h.rows, h.width), np.float32)
        pad = njit(parallel=True, **opts)(ns["pad_copy"])
        pt, pleft = np.int64(h.top), np.int64(h.left)
        pre = (pad, (x, xp, pt, pleft))
        args[0] = xp
    elif extra:
        args.append(np.empty(batch * extra, np.float32))
    if pl.strategy == "winograd":   # its input-transform kernel runs first
        exec(winograd.generate_input(spec, "transform", pl).replace("cache=True", "cache=False"),
             ns)
        pre = (njit(parallel=True, **opts)(ns["transform"]), (x, args[-1]))
    compile_tail(fn)   # its helpers, as cnnc compiles them
    if pre:   # a kernel of its own, with the loop vectorizer as cnnc compiles it
        compile_tail(pre[0])
        pre[0](*pre[1])
    with loop_vectorizer(pl.loop_vectorize):
        fn(*args)
    if pre:
        pad_fn, pad_args = pre

        def run():
            pad_fn(*pad_args)
            fn(*args)
        run.args = args
        return run

    def run():
        fn(*args)
    run.args = args
    return run


def uses_blas(pl: Plan) -> bool:
    """Whether the kernel of plan ``pl`` calls BLAS (np.dot)."""
    return pl.strategy in ("gemm", "im2col")


def warm(run, seconds: float = WARM) -> None:
    """Call ``run`` for about ``seconds``: after a compile (one busy core) the first ~0.25 s
    of a parallel kernel ran 1.7x slower (measured: 1060 then 630 us), enough to make the
    candidate timed first look worst."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run()


def interleaved(runs, rounds: int, seconds: float, settle=None) -> list[float]:
    """Median seconds of each of ``runs``, timed in ``rounds`` rounds that visit every run in
    turn (:func:`median_seconds` each), so that machine drift spreads over all of them;
    ``settle[i]`` seconds of sleep after run ``i`` (the BLAS threads' spin)."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, (r, ts) in enumerate(zip(runs, times)):
            ts.append(median_seconds(r, seconds))
            if settle and settle[i]:
                time.sleep(settle[i])
    return [statistics.median(ts) for ts in times]


def median_seconds(run, seconds: float) -> float:
    """Median of repeated calls filling about ``seconds``."""
    t0 = time.perf_counter()
    run()
    once = max(time.perf_counter() - t0, 1e-6)
    times = []
    for _ in range(max(3, min(200, int(seconds / once)))):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass
class Tuned:
    """What one tune did: per spec key, the candidates' medians (µs) and the winner."""
    results: dict[str, dict] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)     # spec keys already tuned
    skipped: list[str] = field(default_factory=list)    # left at the default (budget spent)
    seconds: float = 0.0
    path: str = ""

    def table(self) -> str:
        rows = [f"{'conv spec':44s} {'default':>10s} {'tuned':>10s}  plan"]
        for key, r in self.results.items():
            rows.append(f"{key:44s} {r['default_us']:9.1f}u {r['us']:9.1f}u  {describe(r['plan'])}")
        rows += [f"{k:44s} {'(tuned before)':>21s}" for k in self.cached]
        rows += [f"{k:44s} {'(budget spent)':>21s}" for k in self.skipped]
        return "\n".join(rows)


def describe(plan: dict | Plan) -> str:
    pl = plan if isinstance(plan, Plan) else Plan(**plan)
    order = ", channel blocks outer" if pl.cb_outer else ""
    if pl.strategy == "winograd":
        return (f"winograd F({pl.wino}x{pl.wino}, 3x3), products in tiles of {pl.p} tiles x "
                f"{pl.cb} ch{order}")
    if pl.strategy != "blocked":
        return pl.strategy
    lv = "" if pl.loop_vectorize else ", no loop vectorizer"
    return f"blocked {pl.p} px x {pl.cb} ch{order}{lv}"


def conv_specs(graph) -> list[ConvSpec]:
    """The distinct conv specs (epilogues dropped) of an optimised graph."""
    from cnnc.backends.lowering import conv_spec
    seen: dict[str, ConvSpec] = {}
    for node in graph.nodes:
        if node.op in ("conv2d", "conv2d_fused"):
            s = dataclasses.replace(conv_spec(node), epilogue=())
            seen.setdefault(spec_key(s), s)
    return list(seen.values())


def tune(specs, batch: int = 1, budget: float = 120.0, force: bool = False,
         progress=None) -> Tuned:
    """Time :func:`candidates` of every spec not yet tuned (all with ``force``) and store
    the winners; stops starting new specs once ``budget`` seconds are spent (counted from
    when the stored plans are loaded)."""
    out = Tuned(path=path())
    have = {} if force else load()
    t0 = time.perf_counter()
    todo = []
    for s in specs:
        if spec_key(s) in have:
            out.cached.append(spec_key(s))
        else:
            todo.append(s)
    for i, s in enumerate(todo):
        key = spec_key(s)
        if time.perf_counter() - t0 > budget:
            out.skipped.append(key)
            continue
        if progress:
            progress(i, len(todo), key)
        cands = candidates(s)
        if len(cands) == 1:
            continue
        runs = [build(s, pl, batch) for pl in cands]
        warm(runs[0])
        med = interleaved(runs, ROUNDS, SECONDS,
                          settle=[BLAS_SETTLE if uses_blas(pl) else 0.0 for pl in cands])
        best = min(range(len(cands)), key=med.__getitem__)
        out.results[key] = {"plan": dataclasses.asdict(cands[best]), "us": med[best] * 1e6,
                            "default_us": med[0] * 1e6, "batch": batch,
                            "candidates": {describe(c): m * 1e6 for c, m in zip(cands, med)}}
        store({key: out.results[key]})
    if progress and todo:
        progress(len(todo), len(todo), "")
    out.seconds = time.perf_counter() - t0
    return out


def tune_graph(graph, batch: int = 1, budget: float = 120.0, force: bool = False,
               quiet: bool = False) -> Tuned:
    """Tune the conv specs of an optimised ``graph`` (progress on stderr unless ``quiet``)."""
    def bar(done, total, key):
        print(f"\rcnnc tune: {done}/{total} conv specs {key:44s}", file=sys.stderr, end="",
              flush=True)
        if done == total:
            print(file=sys.stderr)
    return tune(conv_specs(graph), batch, budget, force, None if quiet else bar)
