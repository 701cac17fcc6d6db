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

So the kernels must be compiled or loaded from the disk cache before ``forward`` is, for
every signature ``forward`` calls them with: the generated module declares those, and
:func:`~cnnc.backends.numba_cpu.runtime.compile_kernels` compiles them (in parallel), or
:class:`Forward` before its first run.  Called from Python (the debugger steps through
``forward`` in the interpreter) a stand-in calls its dispatcher.
"""

from __future__ import annotations

import hashlib
import types as pytypes

import llvmlite.binding as ll
from numba import njit
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.core.typing.templates import AbstractTemplate, infer_global
from numba.extending import lower_builtin


#: written into every generated module (so into its disk-cache key): a change to how
#: ``forward`` names its kernels must not meet a ``forward`` cached under the old scheme
ABI = 2


class KernelCall:
    """Stands in for kernel dispatcher ``dispatcher`` (or a stage's :class:`Forward`) in
    ``forward``'s globals; ``forward`` may call it only with the argument ranks in
    ``signatures`` (what the module declares)."""

    def __init__(self, name: str, dispatcher, signatures, register_tiled: bool):
        from cnnc.backends.numba_cpu.runtime import kernel_signature
        self.name = name
        self.dispatcher = dispatcher
        self.ranks = tuple(tuple(r) for r in signatures)
        self.signatures = tuple(kernel_signature(r) for r in self.ranks)
        self.register_tiled = register_tiled

    def __call__(self, *args):
        return self.dispatcher(*args)

    def __repr__(self) -> str:
        return f"KernelCall({self.name})"

    def ensure(self) -> None:
        """Compile (or load from the disk cache) every declared signature, and name each by
        its :func:`symbol`: ``forward``, compiled or loaded after this, finds them all."""
        from cnnc.backends.numba_cpu.runtime import compile_signature
        for ranks in self.ranks:
            compile_signature(self.dispatcher, ranks, self.register_tiled)
        publish(self.dispatcher)


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


def register(call: KernelCall) -> KernelCall:
    """Type and lower calls of ``call`` (a plain call of its symbol); returns it."""
    class Template(AbstractTemplate):
        key = call

        def generic(self, args, kws):
            args = tuple(args)
            if kws or args not in call.signatures:
                # a forward loaded from the disk cache is not typed again: a call the module
                # did not declare would find no compiled kernel behind its symbol
                got = ", ".join([*map(str, args), *kws])
                raise TypingError(f"forward calls kernel {call.name} with ({got}); its module "
                                  f"declares only {[tuple(map(str, s)) for s in call.signatures]}")
            call.ensure()
            return call.dispatcher.overloads[args].signature

    infer_global(call, types.Function(Template))

    @lower_builtin(call, types.VarArg(types.Any))
    def lower(context, builder, sig, args):
        restype, argtypes = sig.return_type, sig.args
        fnty = context.call_conv.get_function_type(restype, argtypes)
        fn = cgutils.get_or_insert_function(builder.module, fnty,
                                            symbol(call.dispatcher, argtypes))
        status, res = context.call_conv.call_function(builder, fn, restype, argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res

    return call


class Forward:
    """The jitted ``forward`` of a generated module.  Before its first run every kernel it
    calls is compiled or loaded for every signature the module declares and named by its
    symbol (a ``forward`` loaded from the disk cache would otherwise call unresolved
    symbols); :func:`~cnnc.backends.numba_cpu.runtime.compile_kernels` has usually done the
    compiling, in parallel."""

    def __init__(self, dispatcher, calls: dict):
        self.dispatcher = dispatcher
        self.calls = calls
        self.ready = False

    def __call__(self, *args):
        self.ensure_calls()
        return self.dispatcher(*args)

    def ensure_calls(self) -> None:
        if not self.ready:
            for call in self.calls.values():
                call.ensure()
            self.ready = True

    def compile(self, sig):
        """Compile (or load from the disk cache) for ``sig`` once every callee is there: a
        stage of ``forward`` (stages.py) is compiled like a kernel."""
        self.ensure_calls()
        return self.dispatcher.compile(sig)

    def __getattr__(self, name):   # stats, overloads, py_func, ... of the dispatcher
        return getattr(self.dispatcher, name)


def jit_forward(func: pytypes.FunctionType, module_globals: dict, signatures: dict) -> Forward:
    """``forward`` jitted (disk-cached) with globals in which each kernel dispatcher named in
    ``signatures`` (kernel name -> the argument ranks of each of its calls) is replaced by
    its :class:`KernelCall`."""
    env = dict(module_globals)
    tiled = set(module_globals.get("NO_LOOP_VECTORIZE", ()))
    calls = {}
    for name, sigs in signatures.items():
        call = calls[name] = KernelCall(name, env[name], sigs, name in tiled)
        register(call)
        env[name] = call
    rebound = pytypes.FunctionType(func.__code__, env, func.__name__, func.__defaults__,
                                   func.__closure__)
    rebound.__qualname__, rebound.__module__ = func.__qualname__, func.__module__
    return Forward(njit(cache=True)(rebound), calls)
