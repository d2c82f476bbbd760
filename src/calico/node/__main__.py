"""`python -m calico.node`: the same as the `calico-node` command."""

import sys

from calico.node.main import main

sys.exit(main())
