"""Front ends: the Keras-like layer API, TF-style eager ops and (optionally) ONNX import."""
