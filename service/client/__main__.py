"""`python -m service.client ...`: the `seqserve-client` CLI (`python -m seqserve_client`), under its old name."""

import sys

from seqserve_client.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m service.client"))
