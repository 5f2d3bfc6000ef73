"""trustml_lab (the package's top level): setup, versions, banner."""

import trustml_lab
from api_tables import Bad

MODULE = trustml_lab

VALID = {
    "setup": lambda: ((), {"seed": 0, "threads": 1}),
    "versions": lambda: ((), {}),
    "banner": lambda: ((), {}),
}

BAD = [
    Bad("setup", lambda: ((), {"seed": -1}), "seed", "negative seed"),
    Bad("setup", lambda: ((), {"seed": 1.5}), "seed", "float seed"),
    Bad("setup", lambda: ((), {"seed": 0, "threads": 0}), "threads", "zero threads"),
]

EXEMPT = {"__version__": "a string, not a callable"}

CONVENTION_EXCEPTIONS = {
    "versions[convention: results]": "a mapping of package name to version string, printed as is; not a result",
}

KNOWN_FAILURES = {
    "setup[convention: keyword-only]",
}
