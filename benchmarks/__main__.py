"""`python -m benchmarks [flags]`, from the repository root: the same as `python benchmarks/speed.py [flags]`."""

import sys

from .cli import main

sys.exit(main())
