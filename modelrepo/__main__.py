"""`python -m modelrepo import MODEL.onnx --name N ...` (needs the `import` extra: onnx, onnxruntime)."""

import sys

from modelrepo.importer.cli import main

sys.exit(main())
