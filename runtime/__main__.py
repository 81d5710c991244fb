"""`python -m radixlm.runtime [serve options]` starts the server (same as `radixlm serve`)."""

import sys

from radixlm.runtime.cli import main

if __name__ == "__main__":  # not when a spawned child re-imports this module as __mp_main__
    sys.exit(main(["serve", *sys.argv[1:]]))
