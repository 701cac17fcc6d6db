"""Regenerate the Keras golden fixtures (run in a separate venv that has Keras 3 + torch):

    python3 -m venv /tmp/kv && /tmp/kv/bin/pip install keras torch==2.13.0 numpy
    KERAS_BACKEND=torch /tmp/kv/bin/python tests/data/make_keras_golden.py

Every architecture of ``golden_specs.py`` is built with Keras in float64, given random weights
(BN with random positive moving variances and non-trivial means), run on random inputs, and
saved as ``keras_<name>.npz``: ``w/<layer>/<i>`` weights, ``in/<j>`` inputs, ``out/<j>`` outputs.
"""

import importlib.util
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).parent


def load_specs():
    spec = importlib.util.spec_from_file_location("golden_specs", HERE / "golden_specs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SPECS


def randomize(model, rng):
    weights = {}
    for layer in model.layers:
        ws = []
        for v in layer.weights:
            shape = tuple(v.shape)
            if "variance" in v.path:
                w = rng.uniform(0.3, 2.0, shape)
            elif "gamma" in v.path:
                w = rng.uniform(0.5, 1.5, shape)
            else:
                w = rng.normal(0.0, 0.5, shape)
            ws.append(w)
        if ws:
            layer.set_weights(ws)
            weights[layer.name] = ws
    return weights


def main():
    keras.config.set_floatx("float64")
    rng = np.random.default_rng(20240607)
    for name, build in load_specs().items():
        model = build(keras)
        weights = randomize(model, rng)
        xs = [rng.normal(0.0, 1.0, (3, *t.shape[1:])) for t in model.inputs]
        ys = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        data = {f"w/{layer}/{i}": w for layer, ws in weights.items() for i, w in enumerate(ws)}
        data.update({f"in/{j}": x for j, x in enumerate(xs)})
        data.update({f"out/{j}": np.asarray(y, dtype=np.float64) for j, y in enumerate(ys)})
        data["keras_version"] = np.array(keras.__version__)
        data["backend"] = np.array(keras.backend.backend())
        np.savez_compressed(HERE / f"keras_{name}.npz", **data)
        print(f"{name}: {len(weights)} weighted layers, outputs "
              f"{[np.shape(y) for y in ys]}")


if __name__ == "__main__":
    main()
