"""The cnnc benchmark harness: cnnc's backends against PyTorch (eager, ``torch.compile``) and
ONNX Runtime on the model zoo, with the same weights, in one process. Run ``python -m
benchmarks --help`` from the repository root; results accumulate in ``RESULTS.md``."""
