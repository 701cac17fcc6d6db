"""Small architectures written once against the shared Keras/cnnc API.

Each ``build(k)`` takes a namespace with ``layers``, ``Input``, ``Model`` and ``Sequential``
(the ``keras`` module or the ``cnnc`` package) and returns the model; layer names are explicit
so weights can be exchanged by name. ``INPUTS`` gives the per-example input shapes.
"""


def conv_same(k):
    """Stride-2 SAME conv on an odd 9x11 input, dilation, BN, SAME max pool, dense."""
    L = k.layers
    x = k.Input((9, 11, 3), name="x")
    y = L.Conv2D(5, 3, strides=2, padding="same", activation="relu6", name="c1")(x)
    y = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="c2")(y)
    y = L.BatchNormalization(epsilon=0.01, name="bn")(y)
    y = L.MaxPooling2D(3, strides=2, padding="same", name="mp")(y)
    y = L.Flatten(name="fl")(y)
    y = L.Dense(6, activation="sigmoid", name="d")(y)
    return k.Model(x, y)


def depthwise(k):
    """Depthwise (multiplier 2, stride 2, SAME on 7x7), BN without scale, SAME avg pool."""
    L = k.layers
    return k.Sequential([
        k.Input((7, 7, 4), name="x"),
        L.DepthwiseConv2D(3, strides=1, padding="same", depth_multiplier=2, name="dw"),
        L.BatchNormalization(scale=False, epsilon=1e-4, name="bn"),
        L.Activation("tanh", name="act"),
        L.AveragePooling2D(3, strides=2, padding="same", name="ap"),
        L.DepthwiseConv2D((2, 3), strides=2, padding="same", name="dw2"),
        L.Conv2D(6, 2, padding="valid", groups=2, name="gc"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(3, activation="softmax", name="d"),
    ])


def branches(k):
    """Functional DAG: two branches concatenated, a residual add and a multiply."""
    L = k.layers
    x = k.Input((8, 8, 3), name="x")
    a = L.Conv2D(4, 1, name="a")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(x)
    c = L.Concatenate(name="cat")([a, b])
    d = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="d")(c)
    e = L.ZeroPadding2D(((1, 0), (0, 1)), name="zp")(L.Conv2D(8, 2, strides=2, name="e")(x))
    s = L.Add(name="add")([d, L.Conv2D(8, 1, strides=2, name="p")(c)])
    s = L.ReLU(max_value=6.0, name="relu6")(s)
    g = L.Activation("hard_sigmoid", name="hs")(L.Conv2D(8, 1, name="gate")(s))
    m = L.Multiply(name="mul")([s, g])
    m = L.LeakyReLU(negative_slope=0.1, name="lrelu")(m)
    m = L.Activation("hard_swish", name="hsw")(m)
    f = L.GlobalMaxPooling2D(name="gmp")(m)
    z = L.Dense(5, name="out")(f)
    return k.Model(x, [z, L.Flatten(name="fe")(e)])


def pool_same(k):
    """SAME pooling on odd sizes: max 2x2/2 and 3x3/2 (asymmetric pads), avg 3x3/2 (symmetric
    pads) and avg 2x2/2 (asymmetric, one real cell in the last window)."""
    L = k.layers
    x = k.Input((7, 9, 2), name="x")
    a = L.MaxPooling2D(2, padding="same", name="mp2")(x)
    b = L.AveragePooling2D(2, padding="same", name="ap2")(x)
    c = L.MaxPooling2D(3, strides=2, padding="same", name="mp3")(L.Conv2D(2, 2, name="c")(x))
    d = L.AveragePooling2D(3, strides=2, padding="same", name="ap3")(x)
    return k.Model(x, [a, b, c, d])


def avg_pool_asymmetric(k):
    """3x3/2 SAME average pooling on 8x8: TF pads (0, 1), a window sees 2 real rows."""
    L = k.layers
    x = k.Input((8, 8, 2), name="x")
    return k.Model(x, L.AveragePooling2D(3, strides=2, padding="same", name="ap")(x))


SPECS = {f.__name__: f for f in (conv_same, depthwise, branches, pool_same,
                                 avg_pool_asymmetric)}
