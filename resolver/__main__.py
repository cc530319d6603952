# `python -m resolver serve ...`: the same entry point as the `scopedns` console script.
import sys

from resolver.cli import main

sys.exit(main())
