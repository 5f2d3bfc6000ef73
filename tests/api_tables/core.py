"""trustml_lab (the package's top level): setup, versions, banner."""

import numpy as np

import trustml_lab
from api_tables import Bad

MODULE = trustml_lab

VALID = {
    "setup": lambda: ((), {"seed": np.int64(0), "threads": 1}),
    "versions": lambda: ((), {}),
    "banner": lambda: ((), {}),
}

BAD = [
    Bad("setup", lambda: ((), {"seed": -1}), "seed", "negative seed"),
    Bad("setup", lambda: ((), {"seed": 1.5}), "seed", "float seed", errors=(TypeError,)),
    Bad("setup", lambda: ((), {"seed": 2**32}), "seed", "seed beyond numpy's range"),
    Bad("setup", lambda: ((), {"seed": True}), "seed", "bool seed", errors=(TypeError,)),
    Bad("setup", lambda: ((), {"seed": "0"}), "seed", "text seed", errors=(TypeError,)),
    Bad("setup", lambda: ((), {"seed": 0, "threads": 0}), "threads", "zero threads"),
    Bad("setup", lambda: ((), {"seed": 0, "threads": 2.0}), "threads", "float threads", errors=(TypeError,)),
    Bad("setup", lambda: ((1,), {"seed": 2}), "setup", "seed both positional and by keyword", errors=(TypeError,)),
]

EXEMPT = {"__version__": "a string, not a callable"}

CONVENTION_EXCEPTIONS = {
    "versions[convention: results]": "a mapping of package name to version string, printed as is; not a result",
}

KNOWN_FAILURES: set[str] = set()
