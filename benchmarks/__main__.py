"""`python -m benchmarks ...`: the runner's command line (`python -m benchmarks --help`)."""

import sys

from benchmarks import runner

sys.exit(runner.main())
