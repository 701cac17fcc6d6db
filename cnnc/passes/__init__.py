"""The pass pipeline. ``optimize(graph, opt_level)`` rewrites the graph in place.

    report = optimize(graph, opt_level=2, print_after="fuse_epilogue", verify_each=True)
    print(report.summary()); print(report.remarks_text()); report.plan.peak_bytes({"N": 8})

Levels: 0 verifies and infers shapes; 1 adds the cleanup passes (eliminate_noops,
constant_fold, cse, dce); 2 adds fold_pad, fold_batchnorm and fuse_epilogue, then cleans up
again. The graph is renumbered at the end and its memory is planned (``report.plan``).
"""

from __future__ import annotations

from cnnc.passes.manager import (Pass, PassContext, PassResult, PipelineReport,
                                 default_pipeline, run_pipeline)
from cnnc.passes.memory_plan import BufferPlan, plan_memory
from cnnc.passes.rewrite import Rewriter, Rule, apply_rules

__all__ = ["optimize", "Pass", "PassContext", "PassResult", "PipelineReport", "Rule", "Rewriter",
           "apply_rules", "default_pipeline", "run_pipeline", "plan_memory", "BufferPlan"]


def optimize(graph, opt_level: int = 2, print_after=None, verify_each: bool = False,
             stream=None) -> PipelineReport:
    """Run the pipeline for ``opt_level`` over ``graph`` (in place); returns a report."""
    return run_pipeline(graph, default_pipeline(opt_level), opt_level=opt_level,
                        print_after=print_after, verify_each=verify_each, stream=stream)
