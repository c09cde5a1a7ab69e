import sys

from textvae.cli.dispatch import main

sys.exit(main())
