"""The pass pipeline. ``optimize(graph, opt_level)`` rewrites the graph in place."""

from __future__ import annotations

from cnnc.ir.verify import verify


def optimize(graph, opt_level: int = 2, print_after=None, verify_each: bool = False,
             stream=None):
    """Run the pipeline for ``opt_level`` over ``graph`` (in place); returns a report."""
    verify(graph, "before the pipeline")
    return None
