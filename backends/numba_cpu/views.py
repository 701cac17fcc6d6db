"""Views of the arena and of the packed weights, made without ``reshape``.

``forward`` and its stages define every buffer as a view of a flat array (the arena, the
scratch or the packed weights) and reshape values without copying (Flatten, Reshape).  Written ``arena[a:b].reshape(shape)``, each costs Numba's
general reshape: an inlined shape normaliser, a call of its no-copy reshape helper and an
error path, per view.  DenseNet-121's ~1300 views took most of a minute of LLVM's time to
compile that way.  :func:`view` builds the C-contiguous array struct directly: the data
pointer moved by ``start`` elements, the given shape, C strides, the buffer's memory owner.

The lowering sizes every buffer (the memory plan the arena, for the bindings of each call;
the lowering itself the scratch and the packed weights); a view past the end of its buffer
would be a bug of cnnc's and raises ``ValueError`` rather than touch memory it does not own.
:func:`py_view` is the same view in NumPy, for the debugger, which runs ``forward``'s
statements in the interpreter.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


OUT_OF_BOUNDS = "a view past the end of its buffer (arena, scratch or weights)"


@intrinsic
def view(typingctx, buf, start, shape):
    """``buf.reshape(-1)[start:start + prod(shape)].reshape(shape)`` for a C array ``buf``."""
    if not (isinstance(buf, types.Array) and buf.layout == "C"
            and isinstance(start, types.Integer) and isinstance(shape, types.BaseTuple)
            and all(isinstance(d, types.Integer) for d in shape)):
        return None
    retty = types.Array(buf.dtype, len(shape), "C")

    def codegen(context, builder, sig, args):
        bufty, startty, shapety = sig.args
        src = make_array(bufty)(context, builder, args[0])
        first = context.cast(builder, args[1], startty, types.intp)
        dims = [context.cast(builder, d, t, types.intp)
                for d, t in zip(cgutils.unpack_tuple(builder, args[2], len(shapety)), shapety)]
        stride, size = src.itemsize, context.get_constant(types.intp, 1)
        strides = []
        for d in reversed(dims):
            strides.append(stride)
            stride, size = builder.mul(stride, d), builder.mul(size, d)
        end = builder.add(first, size)
        bad = builder.or_(builder.icmp_signed("<", first, first.type(0)),
                          builder.icmp_signed(">", end, src.nitems))
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(builder, ValueError, (OUT_OF_BOUNDS,))
        out = make_array(retty)(context, builder)
        populate_array(out, data=builder.gep(src.data, [first]), shape=dims,
                       strides=strides[::-1], itemsize=src.itemsize, meminfo=src.meminfo)
        return impl_ret_borrowed(context, builder, retty, out._getvalue())

    return retty(buf, start, shape), codegen


def py_view(buf, start, shape):
    """:func:`view` in NumPy (for the interpreter)."""
    n = int(np.prod(shape, dtype=np.int64))
    if start < 0 or start + n > buf.size:
        raise ValueError(OUT_OF_BOUNDS)
    return buf.reshape(-1)[start:start + n].reshape(shape)
