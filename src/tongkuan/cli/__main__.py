import sys

from tongkuan.cli import main

sys.exit(main())
