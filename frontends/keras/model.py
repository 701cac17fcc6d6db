"""Models: the functional :class:`Model` (a DAG of layer calls) and :class:`Sequential`.

Both emit the same IR: :meth:`Model.to_graph` returns a fresh :class:`cnnc.ir.Graph` with one
input per ``Input`` (named after it, default ``"x"``; shape ``("N", H, W, C)``), every weight as
a constant tagged with its layer, and the model outputs set.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.frontends.keras.core import (Emitter, InputLayer, KerasTensor, Layer, NameScope,
                                       to_ir_shape)
from cnnc.ir.graph import Graph


class Model:
    """``Model(inputs=..., outputs=...)``: single tensors or lists of them."""

    def __init__(self, inputs=None, outputs=None, name=None):
        self.name = self._check_name(name, "functional")
        if inputs is None or outputs is None:
            raise ConfigError(f"model {self.name!r}: Model needs inputs= and outputs= "
                              f"(symbolic tensors); use Sequential for a plain stack")
        self._set_io(inputs, outputs)

    @staticmethod
    def _check_name(name, default):
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"model name must be a non-empty string, got {name!r}")
        return name or default

    # ---- structure ---------------------------------------------------------------------------
    def _set_io(self, inputs, outputs):
        self._single_output = not isinstance(outputs, (list, tuple))
        ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        for what, ts in (("inputs", ins), ("outputs", outs)):
            if not ts:
                raise ConfigError(f"model {self.name!r}: {what} is empty")
            for t in ts:
                if not isinstance(t, KerasTensor):
                    raise ConfigError(f"model {self.name!r}: {what} must be symbolic tensors "
                                      f"(from Input() or a layer call), got {type(t).__name__}")
        for t in ins:
            if not isinstance(t.layer, InputLayer):
                raise ConfigError(f"model {self.name!r}: input {t!r} does not come from Input()")
        if len({id(t) for t in ins}) != len(ins):
            raise ConfigError(f"model {self.name!r}: the same Input is listed twice in inputs")
        nodes, seen, stack = [], set(), [t.node for t in outs]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            nodes.append(node)
            if isinstance(node.layer, InputLayer) and node not in [t.node for t in ins]:
                raise ConfigError(f"model {self.name!r}: the outputs depend on "
                                  f"{node.layer.where}, which is not in the model's inputs")
            stack.extend(x.node for x in node.inputs)
        self._inputs, self._outputs = ins, outs
        self._nodes = sorted(nodes, key=lambda n: n.id)  # creation order is topological
        layers = list(dict.fromkeys(n.layer for n in self._nodes))
        # listed inputs first, in the given order (an unused Input still belongs to the model)
        in_layers = [t.layer for t in ins]
        self._layers = in_layers + [l for l in layers if l not in in_layers]
        self._dedupe_names()

    def _dedupe_names(self):
        explicit = {}
        for layer in self._layers:
            if layer._explicit_name:
                if layer.name in explicit and explicit[layer.name] is not layer:
                    raise ConfigError(f"model {self.name!r}: two layers are named "
                                      f"{layer.name!r}; layer names must be unique")
                explicit[layer.name] = layer
        scope = NameScope()
        scope.used |= set(explicit)
        for layer in self._layers:
            if not layer._explicit_name:
                base = layer.name
                if base in scope.used:
                    layer.name = scope.unique(base.rsplit("_", 1)[0]
                                              if base.rsplit("_", 1)[-1].isdigit() else base)
                else:
                    scope.used.add(base)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._outputs)

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"model {self.name!r} has no layer named {name!r}; layers: "
                          f"{[l.name for l in self.layers]}")

    # ---- weights -----------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        from cnnc.frontends.keras.core import weight_list
        weights = weight_list(weights, f"model {self.name!r}")
        counts = [(layer, len(layer.weight_names)) for layer in self.layers]
        total = sum(n for _, n in counts)
        if len(weights) != total:
            raise ShapeError(f"model {self.name!r}: set_weights expected {total} arrays "
                             f"({', '.join(f'{l.name}: {n}' for l, n in counts if n)}), "
                             f"received {len(weights)}")
        before = [(layer, layer.get_weights()) for layer, n in counts if n]
        i = 0
        try:
            for layer, n in counts:
                layer.set_weights(weights[i:i + n])
                i += n
        except ShapeError:  # all or nothing: layers already set get their old weights back
            for layer, old in before:
                layer.set_weights(old)
            raise

    def count_params(self, trainable: bool | None = None) -> int:
        """All weight scalars, Keras's convention (BN moving statistics included);
        ``trainable=True`` counts only trainable ones (PyTorch's convention for BN)."""
        return sum(layer.count_params(trainable) for layer in self.layers)

    # ---- the graph ---------------------------------------------------------------------------
    def to_graph(self) -> Graph:
        """A fresh IR graph of the model (passes mutate it; each call builds a new one)."""
        g = Graph(self.name)
        env: dict[int, object] = {}
        used: set[str] = set()
        for t in self.inputs:
            base = t.layer.input_name or "x"
            name, i = base, 0
            while name in used:
                i += 1
                name = f"{base}_{i}"
            used.add(name)
            env[id(t)] = g.add_input(to_ir_shape(t.shape), name=name)
        em = Emitter(g)
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            outs = node.layer.emit(em, [env[id(x)] for x in node.inputs])
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for t, v in zip(node.outputs, outs):
                env[id(t)] = v
        g.set_outputs(*(env[id(t)] for t in self.outputs))
        return g

    def __call__(self, *xs):
        """Run on NumPy arrays with the reference (float64 when an input is float64)."""
        from cnnc.backends.reference import run_reference
        dtype = np.float64 if any(np.asarray(x).dtype == np.float64 for x in xs) else np.float32
        return run_reference(self.to_graph(), *xs, dtype=dtype)

    predict = __call__

    # ---- summary -----------------------------------------------------------------------------
    def _output_shapes(self, layer) -> list:
        return [t.shape for n in self._nodes if n.layer is layer for t in n.outputs]

    def summary(self, print_fn=print) -> str:
        """A Keras-style table (layer (type), output shape, params, totals); printed with
        ``print_fn`` (None: silent) and returned."""
        rows = []
        for layer in self.layers:
            shapes = self._output_shapes(layer)
            shape = "?" if not shapes else (str(shapes[0]) if len(shapes) == 1 else
                                            ", ".join(str(s) for s in shapes))
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         f"{layer.count_params():,}"))
        w0 = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
        w1 = max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2
        w2 = max([len("Param #")] + [len(r[2]) for r in rows])
        width = w0 + w1 + w2
        lines = [f'Model: "{self.name}"', "_" * width,
                 "Layer (type)".ljust(w0) + "Output Shape".ljust(w1) + "Param #".rjust(w2),
                 "=" * width]
        for i, (a, b, c) in enumerate(rows):
            lines.append(a.ljust(w0) + b.ljust(w1) + c.rjust(w2))
            lines.append("_" * width if i < len(rows) - 1 else "=" * width)
        total, train = self.count_params(), self.count_params(trainable=True)
        lines += [f"Total params: {total:,}", f"Trainable params: {train:,}",
                  f"Non-trainable params: {total - train:,}", "_" * width]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def explain(self, channels: int = 4, print_fn=print) -> str:
        """Each layer's output-size formula, padding, receptive field, params, FLOPs."""
        return __import__("cnnc.explain", fromlist=["explain"]).explain(self, channels, print_fn)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.layers)} layers>"


class Sequential(Model):
    """A plain stack. The first element may be ``Input(shape=...)``; otherwise the first layer
    needs ``input_shape=``. Auto-named layers are numbered within the model."""

    def __init__(self, layers=None, name=None):
        self.name = self._check_name(name, "sequential")
        self._stack: list[Layer] = []
        self._input: KerasTensor | None = None
        self._last: KerasTensor | None = None
        self._scope = NameScope()
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise ConfigError(f"model {self.name!r}: layers must be a list, got "
                              f"{type(layers).__name__}")
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        if isinstance(layer, InputLayer):
            layer = layer.output
        if isinstance(layer, KerasTensor):
            if self._stack or self._input is not None or not isinstance(layer.layer, InputLayer):
                raise ConfigError(f"model {self.name!r}: an Input may only be the first element "
                                  f"of a Sequential, got {layer!r} at position "
                                  f"{len(self._stack) + (self._input is not None)}")
            layer.layer._finalize_name(self._scope)
            self._input = self._last = layer
            return
        if isinstance(layer, Model):
            raise ConfigError(f"model {self.name!r}: nesting models is not supported "
                              f"(got model {layer.name!r})")
        if not isinstance(layer, Layer):
            raise ConfigError(f"model {self.name!r}: Sequential takes layers, got "
                              f"{type(layer).__name__} ({layer!r})")
        if any(l is layer for l in self._stack):
            raise ConfigError(f"model {self.name!r}: {layer.where} is already in the model")
        layer._finalize_name(self._scope)
        if layer.name in {l.name for l in self._stack}:
            raise ConfigError(f"model {self.name!r}: two layers are named {layer.name!r}; "
                              f"layer names must be unique")
        if self._input is None and not self._stack and layer.input_shape is not None:
            self._input = self._last = InputLayer(shape=layer.input_shape[1:]).output
            self._input.layer._finalize_name(self._scope)
        self._stack.append(layer)
        if self._last is not None:
            self._last = layer(self._last)

    def _require_input(self, what: str):
        if self._input is None:
            raise ConfigError(f"model {self.name!r} has no input shape, so it cannot {what}: "
                              f"add cnnc.Input(shape=(H, W, C)) as the first element or pass "
                              f"input_shape= to its first layer")
        if not self._stack:
            raise ConfigError(f"model {self.name!r} has no layers")
        Model._set_io(self, self._input, self._last)

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def to_graph(self) -> Graph:
        self._require_input("build a graph")
        return super().to_graph()

    def summary(self, print_fn=print) -> str:
        self._require_input("summarise its shapes")
        return super().summary(print_fn)

    def count_params(self, trainable: bool | None = None) -> int:
        self._require_input("count its parameters")
        return super().count_params(trainable)

    def get_weights(self):
        self._require_input("have weights")
        return super().get_weights()

    def set_weights(self, weights):
        self._require_input("have weights")
        return super().set_weights(weights)

    @property
    def inputs(self):
        self._require_input("list its inputs")
        return [self._input]

    @property
    def outputs(self):
        self._require_input("list its outputs")
        return [self._last]
