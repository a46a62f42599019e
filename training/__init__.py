"""Training package: data, recurrent models, training loop, ONNX export and the shipped-model builds.

Run as `python -m training --help`. Only this package imports torch.
"""
