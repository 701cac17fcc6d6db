"""A longer fuzz run of cnnc's public surface; prints outcome counts per class of input.

    python tools/fuzz.py --minutes 5 [--seed 1] [--no-cpu]

Classes (round robin): random layer arguments; random Sequential stacks compiled for numpy and
checked against the float64 reference; random call inputs to a compiled model (targets numpy
and cpu); mutated bytes of small valid ONNX models; mutated bytes of a saved artifact. The
generators are those of the test suite (tests/reliability/fuzzgen.py). Every case must end in
a result or a CnncError: anything else is listed with its type and first message, and a case
running longer than ``--case-timeout`` seconds counts as a hang. Exit status 1 when any case
ended otherwise.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reliability"))


class Hang(Exception):
    """Raised by the watchdog inside a case that ran too long."""


def _alarm(signum, frame):
    raise Hang()


def run(minutes: float, seed: int, cpu: bool, case_timeout: int) -> int:
    import numpy as np

    import cnnc
    import fuzzgen as F

    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    c = F.RandomChooser(seed)
    tmp = tempfile.mkdtemp(prefix="cnnc-fuzz-")
    targets = {"numpy": cnnc.compile(F.small_model(), target="numpy")}
    if cpu:
        targets["cpu"] = cnnc.compile(F.small_model(), target="cpu")
    onnx_seeds = F.onnx_seeds()
    art_seed = F.artifact_seed(tmp)
    art_path = os.path.join(tmp, "mutated.cnnc")

    def onnx_case():
        kind, data = F.mutate(c, c.choice(onnx_seeds))
        return f"onnx {kind}", lambda: F.case_onnx(c, data)

    def artifact_case():
        kind, data = F.mutate(c, art_seed)
        return f"artifact {kind}", lambda: F.case_artifact(c, data, art_path)

    makers = [lambda: ("layer arguments", lambda: F.case_layer_args(c)),
              lambda: ("layer stacks", lambda: F.case_stack(c)),
              onnx_case, artifact_case]
    makers += [lambda t=t: (f"call ({t})", lambda: F.case_call(c, targets[t])) for t in targets]

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    findings: dict[str, str] = {}
    signal.signal(signal.SIGALRM, _alarm)
    end = time.monotonic() + 60 * minutes
    slowest = (0.0, "")
    i = 0
    while time.monotonic() < end:
        name, case = makers[i % len(makers)]()
        i += 1
        t0 = time.perf_counter()
        signal.alarm(case_timeout)
        try:
            label = F.classify(case)
        except Hang:
            label = "HANG"
        finally:
            signal.alarm(0)
        dt = time.perf_counter() - t0
        slowest = max(slowest, (dt, name))
        key = label.split(":")[0]
        counts[name][key] += 1
        if key.startswith(("RAW", "HANG")):
            findings.setdefault(f"{name}: {key}", label)
    _report(counts, findings, i, minutes, slowest)
    return 1 if findings else 0


def _report(counts, findings, total, minutes, slowest) -> None:
    print(f"cnnc fuzz: {total} cases in {minutes:g} min; slowest case {slowest[0]:.2f} s "
          f"({slowest[1]})")
    width = max(len(k) for k in counts) + 2
    print(f"{'class'.ljust(width)}{'cases':>8}  outcomes")
    for name in sorted(counts):
        cnt = counts[name]
        outcomes = ", ".join(f"{k} {v}" for k, v in cnt.most_common())
        print(f"{name.ljust(width)}{sum(cnt.values()):>8}  {outcomes}")
    bad = sum(v for cnt in counts.values() for k, v in cnt.items()
              if k.startswith(("RAW", "HANG")))
    print(f"non-CnncError exceptions and hangs: {bad}")
    for key, label in findings.items():
        print(f"  {key}: {label}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cpu", action="store_true", help="skip the Numba CPU target")
    p.add_argument("--case-timeout", type=int, default=60, help="seconds before a hang")
    a = p.parse_args(argv)
    if a.minutes <= 0:
        p.error(f"--minutes must be positive, got {a.minutes}")
    return run(a.minutes, a.seed, not a.no_cpu, a.case_timeout)


if __name__ == "__main__":
    sys.exit(main())
