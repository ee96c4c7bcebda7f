"""`python -m gpt2onnx.cli`: the `gpt2onnx` command without its console script."""

import sys

from . import main

sys.exit(main())
