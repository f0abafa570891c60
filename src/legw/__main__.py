import sys

from legw.cli import main

sys.exit(main())
