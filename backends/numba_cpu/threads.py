"""The thread count of the next parallel kernel, settable from cached generated code.

``forward`` runs small parallel kernels on one thread (see ``lower.SERIAL_WORK``).  Numba's
own ``numba.set_num_threads`` / ``get_num_threads`` work inside jitted code, but they call
the threading layer through ctypes pointers, which keeps a function that uses them out of
the disk cache (the warm start would recompile ``forward`` every time).  These call the same
two functions of the threading layer by their symbol names, which Numba registers with LLVM
when it launches its threads: cacheable.  Both are jitted, so they also run from Python (the
debugger and the profiler step through ``forward`` in the interpreter).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.ufunc import parallel

parallel._launch_threads()   # registers the symbols before any cached code is linked


@intrinsic
def _get(typingctx):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "get_num_threads")
        return builder.sext(builder.call(fn, []), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _set(typingctx, n):
    if not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]), "set_num_threads")
        builder.call(fn, [builder.trunc(args[0], ir.IntType(32))])
        return context.get_dummy_value()
    return types.none(n), codegen


@njit(cache=True)
def get_threads():
    """The threads the next parallel region of this thread uses."""
    return _get()


@njit(cache=True)
def set_threads(n):
    """Use ``n`` threads (1 .. NUMBA_NUM_THREADS) for this thread's next parallel regions."""
    _set(max(1, n))
