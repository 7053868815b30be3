import sys

from svc_pl.cli import main

sys.exit(main())
