import sys

from pysup.cli import main

sys.exit(main())
