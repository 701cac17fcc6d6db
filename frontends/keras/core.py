"""The layer machinery: symbolic tensors, call records, per-model naming, weights, emission.

A layer called on symbolic tensors (:class:`KerasTensor`) builds its weights once (from the
input shapes, like Keras), infers its output shapes by emitting its IR nodes into a scratch
graph (so the op registry's shape rules are the only shape rules) and records a
:class:`CallNode`. A model walks those records to emit the real graph (:meth:`Layer.emit`).

Weights live in Keras's layout and order; :meth:`Layer.get_weights` / :meth:`set_weights`
exchange them as NumPy arrays.
"""

from __future__ import annotations

import itertools
import re
import zlib

import numpy as np

from cnnc.errors import ConfigError, ResourceError, ShapeError
from cnnc.frontends.keras import args as A
from cnnc.ir.graph import Graph

_call_ids = itertools.count()


def snake_case(name: str) -> str:
    """Keras's default layer names: ``Conv2D -> conv2d``, ``ReLU -> re_lu``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class NameScope:
    """Auto-names unique within one model: ``conv2d``, ``conv2d_1``, ... Scopes of tensors that
    meet in one layer call are merged."""

    def __init__(self):
        self.used: set[str] = set()
        self.parent: NameScope | None = None

    def root(self) -> "NameScope":
        s = self
        while s.parent is not None:
            s = s.parent
        return s

    def merge(self, other: "NameScope") -> "NameScope":
        a, b = self.root(), other.root()
        if a is not b:
            a.used |= b.used
            b.parent = a
        return a

    def unique(self, base: str) -> str:
        s = self.root()
        name, i = base, 0
        while name in s.used:
            i += 1
            name = f"{base}_{i}"
        s.used.add(name)
        return name


class KerasTensor:
    """A symbolic tensor: its Keras shape (``None`` batch) and the call that produced it."""

    __slots__ = ("shape", "node", "index", "scope")

    def __init__(self, shape, node: "CallNode", index: int, scope: NameScope):
        self.shape = tuple(shape)
        self.node = node
        self.index = index
        self.scope = scope

    @property
    def layer(self) -> "Layer":
        return self.node.layer

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape} from layer {self.node.layer.name!r}>"


class CallNode:
    """One call of a layer: its symbolic inputs and outputs, in creation (topological) order."""

    __slots__ = ("layer", "inputs", "outputs", "id")

    def __init__(self, layer: "Layer", inputs: list[KerasTensor]):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs: list[KerasTensor] = []
        self.id = next(_call_ids)


class Emitter:
    """Emits a layer's nodes into ``graph``. In scratch mode (shape inference) weights become
    typed graph inputs instead of constants, so no array is copied."""

    def __init__(self, graph: Graph, scratch: bool = False):
        self.graph = graph
        self.scratch = scratch
        self._consts: dict = {}

    def constant(self, layer: "Layer", key: str, array: np.ndarray):
        k = (id(layer), key)
        if k not in self._consts:
            if self.scratch:
                v = self.graph.add_input(np.shape(array), name=f"{layer.name}/{key}")
            else:
                v = self.graph.constant(array, layer=layer.name)
            self._consts[k] = v
        return self._consts[k]

    def op(self, layer: "Layer", op: str, inputs, attrs=None):
        return self.graph.add(op, inputs, attrs, layer=layer.name)


def to_ir_shape(shape) -> tuple:
    return tuple("N" if d is None else d for d in shape)


def to_keras_shape(shape) -> tuple:
    return tuple(None if isinstance(d, str) else d for d in shape)


class Layer:
    """Base class. Subclasses set ``num_inputs`` (1, or None for a list of >= 2 tensors),
    create weights in :meth:`build` with :meth:`add_weight` and emit nodes in :meth:`emit`."""

    num_inputs: int | None = 1

    def __init__(self, *, name=None, input_shape=None, **kwargs):
        base = snake_case(type(self).__name__)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ConfigError(f"{type(self).__name__} layer: name must be a non-empty string "
                              f"without '/', got {name!r}")
        self.name = name or base
        self._named = name is not None
        self._explicit_name = name is not None
        if kwargs:
            raise ConfigError(f"{self.where}: unknown argument(s) {sorted(kwargs)} "
                              f"(values {[kwargs[k] for k in sorted(kwargs)]!r})")
        self.input_shape = None
        if input_shape is not None:
            self.input_shape = (None,) + A.shape_tuple(input_shape, "input_shape", self.where)
        self.built = False
        self._weights: dict[str, np.ndarray] = {}
        self._non_trainable: set[str] = set()

    # ---- naming ------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{type(self).__name__} layer {self.name!r}"

    def _finalize_name(self, scope: NameScope) -> None:
        if self._named:
            scope.root().used.add(self.name)
        else:
            self.name = scope.unique(self.name)
            self._named = True

    # ---- weights -----------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the weights for ``input_shape`` (Keras shape(s), ``None`` batch)."""

    def add_weight(self, key: str, array: np.ndarray, trainable: bool = True) -> None:
        self._weights[key] = np.asarray(array, dtype=np.float32)
        if not trainable:
            self._non_trainable.add(key)

    def kernel_seed(self, seed) -> int:
        """The given seed, else one derived from the layer name (deterministic per layer)."""
        if seed is None:
            return zlib.crc32(self.name.encode())
        if not A.is_int(seed) or seed < 0:
            raise ConfigError(f"{self.where}: seed must be None or a non-negative integer, "
                              f"got {seed!r}")
        return int(seed)

    @property
    def weight_names(self) -> list[str]:
        return list(self._weights)

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self._weights.values()]

    def set_weights(self, weights) -> None:
        weights = weight_list(weights, self.where)
        expected = [(k, w.shape) for k, w in self._weights.items()]
        if not self.built and weights:
            raise ShapeError(f"{self.where} is not built yet (call it on an input or add it to a "
                             f"model with an Input) and has no weights; received {len(weights)}")
        if len(weights) != len(expected):
            raise ShapeError(f"{self.where}: set_weights expected {len(expected)} array(s) "
                             f"{_describe(expected)}, received {len(weights)} "
                             f"{_describe_arrays(weights)}")
        new = {}
        for (key, shape), w in zip(expected, weights):
            try:
                w = np.asarray(w)
            except (ValueError, TypeError) as e:
                raise ShapeError(f"{self.where}: weight {key!r} (expected shape {shape}) is not "
                                 f"an array: {e}") from None
            if w.shape != shape:
                raise ShapeError(f"{self.where}: weight {key!r} expected shape {shape}, received "
                                 f"{w.shape}")
            if w.dtype.kind not in "fiu":
                raise ShapeError(f"{self.where}: weight {key!r} must be numeric, received "
                                 f"dtype {w.dtype}")
            new[key] = np.array(w, dtype=np.float64 if w.dtype == np.float64 else np.float32)
        self._weights.update(new)

    def count_params(self, trainable: bool | None = None) -> int:
        """Number of weight scalars (``trainable``: True/False to count only those)."""
        if not self.built:
            raise ConfigError(f"{self.where} is not built yet, so it has no parameters to count")
        return int(sum(w.size for k, w in self._weights.items()
                       if trainable is None or (k not in self._non_trainable) == trainable))

    # ---- emission ----------------------------------------------------------------------------
    def const(self, em: Emitter, key: str):
        return em.constant(self, key, self._weights[key])

    def emit(self, em: Emitter, inputs: list):
        """Emit this layer's nodes for IR values ``inputs``; return the output value(s)."""
        raise NotImplementedError(type(self).__name__)

    def emit_activation(self, em: Emitter, v, name: str):
        for op, attrs in A.ACTIVATIONS[name]:
            v = em.op(self, op, [v], attrs)
        return v

    def expect_rank(self, shape, rank: int, what: str = "(batch, height, width, channels)"):
        if len(shape) != rank:
            raise ShapeError(f"{self.where} expects a rank-{rank} input {what}, received shape "
                             f"{shape}")

    # ---- calling -----------------------------------------------------------------------------
    def __call__(self, inputs):
        many = isinstance(inputs, (list, tuple))
        xs = list(inputs) if many else [inputs]
        self._check_arity(xs, many)
        if all(isinstance(x, KerasTensor) for x in xs):
            return self._call_symbolic(xs, many)
        if any(isinstance(x, KerasTensor) for x in xs):
            raise ConfigError(f"{self.where}: cannot mix symbolic tensors and arrays in one call")
        return self._call_eager(xs, many)

    def _check_arity(self, xs, many):
        if self.num_inputs == 1 and (many or len(xs) != 1):
            raise ConfigError(f"{self.where} takes one input tensor, received {len(xs)}")
        if self.num_inputs is None and (not many or len(xs) < 2):
            raise ConfigError(f"{self.where} takes a list of at least 2 tensors, received "
                              f"{len(xs) if many else 'a single tensor'}")

    def _ensure_built(self, shapes, many):
        if not self.built:
            try:
                self.build(shapes if many else shapes[0])
            except ResourceError as e:
                raise ResourceError(f"{self.where}: {e}") from None
            except MemoryError as e:  # NumPy could not allocate a weight
                raise ResourceError(f"{self.where}: cannot allocate its weights for input "
                                    f"shape {shapes if many else shapes[0]}: {e}") from None
            self.built = True

    def _call_symbolic(self, xs: list[KerasTensor], many: bool):
        scope = xs[0].scope
        for x in xs[1:]:
            scope = scope.merge(x.scope)
        self._finalize_name(scope)
        shapes = [x.shape for x in xs]
        self._ensure_built(shapes, many)
        out_shapes = self.infer_shapes(shapes)
        node = CallNode(self, xs)
        node.outputs = [KerasTensor(s, node, i, scope.root()) for i, s in enumerate(out_shapes)]
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def infer_shapes(self, shapes) -> list[tuple]:
        """Output Keras shapes, by emitting into a scratch graph (the ops' shape rules)."""
        g = Graph(f"{self.name}-shapes")
        ins = [g.add_input(to_ir_shape(s), name=f"in{i}") for i, s in enumerate(shapes)]
        outs = self.emit(Emitter(g, scratch=True), ins)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return [to_keras_shape(v.type.shape) for v in outs]

    def _call_eager(self, xs, many):
        """Run the layer on arrays through the float64 reference (float32 unless given f64)."""
        from cnnc.backends.reference import evaluate
        arrays = [np.asarray(x) for x in xs]
        for a in arrays:
            if a.dtype.kind not in "fiu" or a.ndim < 1:
                raise ShapeError(f"{self.where}: eager inputs must be numeric arrays with a "
                                 f"batch axis, received dtype {a.dtype} shape {a.shape}")
        self._finalize_name(NameScope())
        self._ensure_built([(None,) + a.shape[1:] for a in arrays], many)
        g = Graph(self.name)
        ins = [g.add_input(a.shape, name=f"x{i}") for i, a in enumerate(arrays)]
        outs = self.emit(Emitter(g), ins)
        g.set_outputs(*(outs if isinstance(outs, (list, tuple)) else [outs]))
        dtype = np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32
        ys = evaluate(g, arrays, dtype)
        return ys[0] if len(ys) == 1 else ys

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def weight_list(weights, where: str) -> list:
    """``weights`` as a list, or a ShapeError naming ``where`` and what was received."""
    if isinstance(weights, (str, bytes, dict, np.ndarray)) or not hasattr(weights, "__iter__"):
        raise ShapeError(f"{where}: set_weights expects a list of arrays, received "
                         f"{type(weights).__name__}")
    return list(weights)


def _describe(expected) -> str:
    return "[" + ", ".join(f"{k} {tuple(s)}" for k, s in expected) + "]"


def _describe_arrays(arrays) -> str:
    return "[" + ", ".join(str(tuple(np.shape(a))) for a in arrays) + "]"


class InputLayer(Layer):
    """The source of a model: ``Input(shape=(H, W, C))`` returns its output tensor.
    ``batch_size`` fixes the batch (the model then takes only that many examples a call);
    by default it is the symbol ``N``."""

    num_inputs = 0

    def __init__(self, shape=None, name=None, dtype="float32", batch_size=None, **kwargs):
        given = name
        super().__init__(name=name, **kwargs)
        if shape is None:
            raise ConfigError(f"{self.where}: shape is required, e.g. Input(shape=(32, 32, 3))")
        if batch_size is not None:
            batch_size = A.positive_int(batch_size, "batch_size", self.where)
        self.shape = (batch_size,) + A.shape_tuple(shape, "shape", self.where)
        if dtype != "float32":
            raise ConfigError(f"{self.where}: only dtype 'float32' inputs are supported, "
                              f"got {dtype!r}")
        self.input_name = given  # the graph input's name (None: "x")
        self.built = True
        scope = NameScope()
        self._finalize_name(scope)
        node = CallNode(self, [])
        node.outputs = [KerasTensor(self.shape, node, 0, scope)]
        self.output = node.outputs[0]

    def __call__(self, inputs):
        raise ConfigError(f"{self.where} cannot be called; use the tensor returned by Input()")


def Input(shape=None, name=None, dtype="float32", batch_size=None, **kwargs) -> KerasTensor:
    """A symbolic model input of per-example ``shape`` (batch excluded), like ``keras.Input``;
    ``batch_size`` fixes the batch."""
    return InputLayer(shape=shape, name=name, dtype=dtype, batch_size=batch_size,
                      **kwargs).output
