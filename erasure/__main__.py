import sys

from erasure.cli import main

sys.exit(main())
