"""The hot loop of generated CPU kernels, read from their x86 assembly.

``python asm_probe.py`` (run with ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` set for the
target to inspect: compiling needs no such CPU) compiles representative kernels the way cnnc
does and prints one JSON object: per kernel, the plan and :func:`hot_loop`'s summary.

The *hot loop* of a kernel is its innermost loop (a block ending in a backward jump that
contains no other such block) with the most packed single-precision FMAs
(``vfmadd...ps``/``vfnmadd...ps``).  For it :func:`hot_loop` reports:

* ``fma``: the number of packed FMAs, ``widths``: the register kinds they use (xmm/ymm/zmm),
* ``accumulators``: the distinct destination registers of those FMAs (AT&T syntax: the last
  operand), i.e. how many independent accumulation chains the loop keeps,
* ``stack_vector``: instructions that move a vector register to or from the stack (an
  ``(%rsp)`` or ``(%rbp)`` memory operand next to an xmm/ymm/zmm register): spills and
  reloads; a tile kept in registers has none.  ``%rbp`` counts only while the loop does not
  write it: a function without a frame pointer may step through an array with it.
* ``fma_loop_stores``: the most packed stores to memory in an innermost loop with as many
  packed FMAs as the hot loop (the same reduction step, e.g. once per kh row; not only the
  hot one): a tile written back to its array on every reduction step
  (LLVM did that in the last of three kh loops of an 8 px x 16 ch AVX-512 tile, running it
  at half speed) has them; a tile kept in registers stores after its loops.
"""

from __future__ import annotations

import json
import re

_LABEL = re.compile(r"^(\.?[\w$.]+):")
_JUMP = re.compile(r"^\s+j[a-z]+\s+(\.?[\w$.]+)\s*(#.*)?$")
_FMA = re.compile(r"^\s+vf(n?)m(add|sub)\w*ps\s")
_VREG = re.compile(r"%([xyz]mm)\d+")
_STACK = re.compile(r"\(%r[sb]p\)")
#: an instruction writing %rbp (AT&T: the last operand), so not the frame pointer
_RBP_WRITTEN = re.compile(r"^\s+\w+\s+[^#]*,\s*%rbp\s*(#.*)?$")
_VSTORE = re.compile(r"^\s+vmov[ua]p[sd]\s+%[xyz]mm\d+,\s*[^%\s]*\(")


def loops(asm: str) -> list[tuple[int, int]]:
    """(first, last) line of every block closed by a backward jump to its label."""
    lines = asm.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := _LABEL.match(line))}
    out = []
    for i, line in enumerate(lines):
        m = _JUMP.match(line)
        if m and labels.get(m.group(1), i) < i:
            out.append((labels[m.group(1)], i))
    return out


def hot_loop(asm: str) -> dict | None:
    """The summary described in the module docstring; None when no loop has a packed FMA."""
    lines = asm.splitlines()
    found = loops(asm)
    best = None
    inner = []
    for a, b in found:
        if any(a <= c and d <= b and (c, d) != (a, b) for c, d in found):
            continue  # not innermost
        body = [ln for ln in lines[a:b + 1] if ln.strip() and not ln.lstrip().startswith("#")]
        fmas = [ln for ln in body if _FMA.match(ln)]
        inner.append((len(fmas), sum(bool(_VSTORE.match(ln)) for ln in body)))
        if fmas and (best is None or len(fmas) > len(best[1])):
            best = (body, fmas)
    if best is None:
        return None
    body, fmas = best
    return {
        "fma_loop_stores": max(st for n, st in inner if n == len(fmas)),
        "lines": len(body),
        "fma": len(fmas),
        "widths": sorted({_VREG.findall(f)[-1] for f in fmas if _VREG.findall(f)}),
        "accumulators": len({f.split(",")[-1].split("#")[0].strip() for f in fmas}),
        "stack_vector": _stack_vectors(body),
    }


def _stack_vectors(body: list[str]) -> list[str]:
    """The instructions of loop ``body`` moving a vector register to or from the stack."""
    stack = _STACK
    if any(_RBP_WRITTEN.match(ln) for ln in body):   # %rbp is a general register here
        stack = re.compile(r"\(%rsp\)")
    return [ln.strip() for ln in body if stack.search(ln) and _VREG.search(ln)]


def scalar_adds(asm: str) -> int:
    """Scalar float32 adds (``vaddss``) in the whole kernel: a register tile's store adds the
    bias to each value, one vector at a time when the store is vectorized."""
    return sum(bool(re.match(r"^\s+vaddss\s", ln)) for ln in asm.splitlines())


def vector_ops(asm: str) -> dict:
    """The register kinds of packed float32 adds and subtracts, and how many there are."""
    ops = [ln for ln in asm.splitlines() if re.match(r"^\s+v(add|sub)ps\s", ln)]
    return {"packed_add": len(ops), "add_widths": sorted({_VREG.findall(ln)[-1] for ln in ops})}


def max_loop(asm: str) -> dict:
    """The innermost loop with the most packed maxes (``vmaxps``): their register kinds, and
    its masked stores (``vmaskmovps``: an AVX2 conditional store, microcoded)."""
    lines = asm.splitlines()
    found = loops(asm)
    best = {"max": 0, "widths": [], "masked_stores": 0}
    for a, b in found:
        if any(a <= c and d <= b and (c, d) != (a, b) for c, d in found):
            continue
        body = lines[a:b + 1]
        maxes = [ln for ln in body if re.match(r"^\s+vmaxps\s", ln)]
        if len(maxes) > best["max"]:
            best = {"max": len(maxes),
                    "widths": sorted({_VREG.findall(ln)[-1] for ln in maxes}),
                    "masked_stores": sum(bool(re.match(r"^\s+vmaskmovps\s+%", ln))
                                         for ln in body)}
    return best


def tail_summary(asm: str) -> dict:
    """What a kernel's epilogue tail function compiled to: the register kinds of its packed
    FMAs (either precision), how many scalar ones it has, and the functions it calls by
    name."""
    lines = asm.splitlines()
    packed = [ln for ln in lines if re.match(r"^\s+vfn?m(add|sub)\w*p[sd]\s", ln)]
    return {"packed_fma": len(packed),
            "widths": sorted({_VREG.findall(ln)[-1] for ln in packed}),
            "scalar_fma": sum(bool(re.match(r"^\s+vfn?m(add|sub)\w*s[sd]\s", ln))
                              for ln in lines),
            "calls": sorted({m.group(1) for ln in lines
                             if (m := re.match(r"^\s+call\w*\s+([\w.$@]+)", ln))})}


def _kernels():
    """name -> (source of a kernel named ``kernel``, argument ranks, plan or None)."""
    import dataclasses

    from cnnc.backends.numba_cpu import convgen, kernels, target, winograd
    from cnnc.ops.fused import num_extras
    S = convgen.ConvSpec
    specs = {
        "conv3x3": S(10, 10, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1)),
        "conv3x3s2": S(12, 12, 64, 3, 3, 128, (2, 2), (1, 1, 1, 1)),
        "conv1x1": S(8, 8, 64, 1, 1, 128),
        "conv1x1se": S(1, 1, 960, 1, 1, 240),   # squeeze-excitation: a 1x1 image
        # AVX2: tiles of three and five ymm (convgen.AVX2_TILE_VECTORS)
        "conv1x1c24": S(8, 8, 64, 1, 1, 24),
        "conv1x1c40": S(8, 8, 64, 1, 1, 40),
        "conv7x7s2": S(32, 32, 3, 7, 7, 64, (2, 2), (3, 3, 3, 3)),
        "depthwise3x3": S(10, 10, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1), groups=64),
        # register tiles on AVX-512 (convgen._depthwise_tiles_pay), per pixel on AVX2
        "depthwise5x5": S(16, 16, 32, 5, 5, 32, (1, 1), (2, 2, 2, 2), groups=32),
        # register tiles on both (ConvNeXt's 7x7)
        "depthwise7x7": S(16, 16, 32, 7, 7, 32, (1, 1), (3, 3, 3, 3), groups=32),
        # SiLU is left to the kernel's loop-vectorized tail function (kernels.TAIL)
        "conv3x3silu": S(10, 10, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1),
                         epilogue=(("swish", 1.0),)),
        # ReLU stays in the store (a select: Numba's max left it scalar), after a residual
        "conv1x1relu": S(16, 16, 16, 1, 1, 64, epilogue=(("relu",),)),
        "conv3x3addrelu": S(10, 10, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1),
                            epilogue=(("add",), ("relu",))),
    }
    out = {}
    for name, spec in specs.items():
        pl = convgen.plan(spec, winograd_ok=False)   # the direct kernels
        ranks = (3 if convgen.halo(spec, pl) else 4,
                 2 if pl.strategy == "depthwise" else 4, 1, *[4] * num_extras(spec.epilogue), 4)
        out[name] = (convgen.generate(spec, "kernel", pl), ranks, pl)
    # Winograd F(2x2, 3x3): the products' register tile, the input transform
    # (loop-vectorized) and the output transform with a SiLU epilogue (the kernel's helper,
    # kernels.HELPERS).  F(4x4, 3x3) shares the products' tile; its output transform, whose
    # 36 points meet factors of 2, 4 and 8 in FMAs, spills (AVX2: ~70 stack moves per
    # vector of channels, once per tile against 36 * cin products) and would be taken for
    # the hot loop here
    spec = S(28, 28, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1))
    pl = winograd.default_plan(spec, m=2)
    out["winograd3x3"] = (winograd.generate(spec, "kernel", pl), (4, 4, 1, 4, 1), pl)
    out["winograd_in"] = (winograd.generate_input(spec, "kernel", pl), (4, 1), None)
    spec = dataclasses.replace(spec, epilogue=(("swish", 1.0),))
    out["winograd3x3silu"] = (winograd.generate(spec, "kernel", pl), (4, 4, 1, 4, 1), pl)
    # a 3x3 max pool (GoogLeNet's), loop-vectorized: maxes in its interior columns
    out["maxpool3x3"] = (kernels.pool("kernel", "max", (1, 28, 28, 192), (1, 28, 28, 192),
                                      (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), False),
                         (4, 4), None)
    out["globalmaxpool"] = (kernels.global_pool("kernel", "max", (1, 7, 7, 1280)), (4, 4), None)
    cb, p = convgen.dense_tile(64, target.effective())
    out["dense"] = (kernels.dense_tiled("kernel", 512, 64, (), 0, cb, p), (2, 3, 1, 2),
                    convgen.Plan("blocked", cb=cb, p=p, loop_vectorize=False))
    return out


def main() -> None:
    import cnnc.backends.numba_cpu  # noqa: F401  (process settings)
    from numba import njit

    from cnnc.backends.numba_cpu import kernels, target
    from cnnc.backends.numba_cpu.lower import PRELUDE
    from cnnc.backends.numba_cpu.runtime import kernel_signature, loop_vectorizer
    report = {"target": target.effective().describe(), "lanes": target.effective().lanes,
              "kernels": {}}
    for name, (source, ranks, pl) in _kernels().items():
        ns: dict = {}
        exec(PRELUDE, ns)
        exec(source.replace("cache=True", "cache=False"), ns)   # no file to cache for
        fn = njit(parallel=True, fastmath=ns["FASTMATH"], error_model="numpy")(ns["kernel"])
        sig = kernel_signature(ranks)
        kernels.compile_tail(fn)
        # as cnnc compiles them (convgen.Plan.loop_vectorize)
        with loop_vectorizer(pl is None or pl.loop_vectorize):
            fn.compile(sig)
        helpers = ns.get("kernel" + kernels.HELPERS, ())
        # kernels.compile_tail made each helper a by-symbol call (extern.KernelCall); the
        # register tile of a Winograd conv lives in one of them
        helper_asm = {h[0]: "".join(ns[h[0]].dispatcher.inspect_asm().values())
                      for h in helpers}
        asm = fn.inspect_asm(sig) + "".join(helper_asm.values())
        report["kernels"][name] = {
            "plan": None if pl is None else {"strategy": pl.strategy, "p": pl.p, "cb": pl.cb,
                                             "loop_vectorize": pl.loop_vectorize},
            "hot": hot_loop(asm), "scalar_adds": scalar_adds(asm)}
        if tail := ns.get("kernel" + kernels.TAIL):
            tail_asm = "".join(tail.dispatcher.inspect_asm().values())
            report["kernels"][name]["tail"] = tail_summary(tail_asm)
        for helper, _, *tiled in helpers:
            if not tiled:   # loop-vectorized: the output transform and epilogue
                h = helper_asm[helper]
                report["kernels"][name]["helper"] = tail_summary(h) | vector_ops(h)
        if pl is None:   # loop-vectorized: its packed arithmetic
            report["kernels"][name]["vector"] = vector_ops(asm)
            report["kernels"][name]["max"] = max_loop(asm)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
