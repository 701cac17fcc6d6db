"""Kernel calls from ``forward`` by symbol, without linking a copy of each kernel into it.

A jitted function that calls another jitted function links the callee's LLVM module into its
own, then runs the full module optimiser and the code generator over the whole: ``forward``
re-optimised and re-emitted every kernel of the model, one after the other on one core (about
10 s of a 25 s cold ResNet-18 compile, after the kernels themselves had been compiled in
parallel).  :func:`jit_forward` gives ``forward`` stand-ins for the kernel dispatchers:
each types like the dispatcher (the signatures it has compiled) and lowers to a plain call of
a symbol named for the kernel (:func:`symbol`), which :class:`Forward` points at the loaded
kernel's code before the JIT loads ``forward`` (as ``threads.py`` does for Numba's thread
functions).

So the kernels must be compiled or loaded from the disk cache before ``forward`` is, which
:func:`~cnnc.backends.numba_cpu.runtime.compile_kernels` does.  Called from Python (the
debugger steps through ``forward`` in the interpreter) a stand-in calls its dispatcher.
"""

from __future__ import annotations

import hashlib
import types as pytypes

import llvmlite.binding as ll
from numba import njit
from numba.core import cgutils, types
from numba.core.typing.templates import AbstractTemplate, infer_global
from numba.extending import lower_builtin

from cnnc.errors import CnncError

#: written into every generated module (so into its disk-cache key): a change to how
#: ``forward`` names its kernels must not meet a ``forward`` cached under the old scheme
ABI = 1


class KernelCall:
    """Stands in for kernel dispatcher ``dispatcher`` in ``forward``'s globals."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher

    def __call__(self, *args):
        return self.dispatcher(*args)

    def __repr__(self) -> str:
        return f"KernelCall({self.dispatcher.py_func.__name__})"


def _compiled(dispatcher, args):
    """The compile result of ``dispatcher`` for argument types ``args`` (compiling it if
    needed, which only a caller that skipped :func:`compile_kernels` makes happen)."""
    args = tuple(args)
    cres = dispatcher.overloads.get(args)
    if cres is None:
        dispatcher.compile(args)
        cres = dispatcher.overloads.get(args)
    return cres


def symbol(dispatcher, args) -> str:
    """The name ``forward`` calls kernel ``dispatcher`` compiled for ``args`` by: fixed by the
    generated module (its name is the hash of its source), the kernel and the argument types.
    Numba's own symbol names carry a per-process counter, so a ``forward`` loaded from the
    disk cache could not name a kernel another process compiled by those."""
    sig = hashlib.sha1(repr(tuple(args)).encode()).hexdigest()[:16]
    return f"cnnc.{dispatcher.py_func.__module__}.{dispatcher.py_func.__name__}.{sig}"


def publish(dispatcher) -> None:
    """Make every compiled version of kernel ``dispatcher`` callable by its :func:`symbol`."""
    for args, cres in dispatcher.overloads.items():
        addr = cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
        ll.add_symbol(symbol(dispatcher, args), addr)


def _register(call: KernelCall) -> None:
    dispatcher = call.dispatcher

    class Template(AbstractTemplate):
        key = call

        def generic(self, args, kws):
            if kws:
                return None
            cres = _compiled(dispatcher, args)
            return None if cres is None else cres.signature

    infer_global(call, types.Function(Template))

    @lower_builtin(call, types.VarArg(types.Any))
    def lower(context, builder, sig, args):
        restype, argtypes = sig.return_type, sig.args
        _compiled(dispatcher, argtypes)
        publish(dispatcher)   # a kernel typing compiled just now: named before forward loads
        fnty = context.call_conv.get_function_type(restype, argtypes)
        fn = cgutils.get_or_insert_function(builder.module, fnty, symbol(dispatcher, argtypes))
        status, res = context.call_conv.call_function(builder, fn, restype, argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res


class Forward:
    """The jitted ``forward`` of a generated module, run only once every kernel it calls is
    compiled or loaded (a ``forward`` loaded from the disk cache before its kernels would
    call unresolved symbols)."""

    def __init__(self, dispatcher, kernels: dict):
        self.dispatcher = dispatcher
        self.kernels = kernels
        self.ready = False

    def __call__(self, *args):
        if not self.ready:
            missing = sorted(n for n, k in self.kernels.items() if not k.overloads)
            if missing:
                raise CnncError(f"kernels {missing} are not compiled: compile (or load) the "
                                f"kernels of a generated module before its forward "
                                f"(runtime.compile_kernels)")
            for k in self.kernels.values():
                publish(k)
            self.ready = True
        return self.dispatcher(*args)

    def __getattr__(self, name):   # stats, overloads, py_func, ... of the dispatcher
        return getattr(self.dispatcher, name)


def jit_forward(func: pytypes.FunctionType, module_globals: dict, kernel_names) -> Forward:
    """``forward`` jitted (disk-cached) with globals in which each kernel dispatcher is
    replaced by its :class:`KernelCall`."""
    env = dict(module_globals)
    kernels = {name: env[name] for name in kernel_names}
    for name, dispatcher in kernels.items():
        call = KernelCall(dispatcher)
        _register(call)
        env[name] = call
    rebound = pytypes.FunctionType(func.__code__, env, func.__name__, func.__defaults__,
                                   func.__closure__)
    rebound.__qualname__, rebound.__module__ = func.__qualname__, func.__module__
    return Forward(njit(cache=True)(rebound), kernels)
