"""`python -m modelrepo import`: any stateful ONNX graph, wrapped into the canonical form, verified, written.

Needs `onnx` and `onnxruntime` (`pip install -e '.[import]'`); nothing of the server imports this package.
"""

from modelrepo.importer.build import ImportOptions, import_onnx

__all__ = ["ImportOptions", "import_onnx"]
