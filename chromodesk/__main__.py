import sys

from chromodesk.cli import main

sys.exit(main())
