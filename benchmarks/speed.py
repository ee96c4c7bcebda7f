"""Speed benchmark (issue 6): gpt2onnx against Optimum and transformers, in one run, on this machine.

    .venv/bin/python benchmarks/speed.py [--repeats 3] [--threads T] [--out docs/speed] [--work DIR] [--quick] [--contenders a,b]

The entry script (also each contender process's); the benchmark is the
`benchmarks` package beside it: see benchmarks/__init__.py.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts this folder first on the path, where the package's own
    # modules (plan, report, ...) could shadow top-level modules of the same name. Put the
    # repository root there instead: the modules are then only benchmarks.<name>.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from benchmarks.cli import main

    sys.exit(main())
