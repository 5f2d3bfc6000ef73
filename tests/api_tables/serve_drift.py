"""trustml_lab.serve.drift: PSI, KS and chi-square drift kernels."""

import numpy as np
import torch

from api_tables import Bad
from trustml_lab.serve import drift

MODULE = drift

_ref = lambda: torch.linspace(0.0, 1.0, 50).reshape(25, 2).double()
_cur = lambda: torch.linspace(0.2, 1.2, 40).reshape(20, 2).double()
_codes = lambda: torch.tensor([[0, 1], [1, 2], [2, 0], [0, 0]])

VALID = {
    "quantile_edges": lambda: ((_ref(),), {"bins": 4}),
    "psi": lambda: ((_ref(), _cur()), {"bins": 5, "floor": 1e-4}),
    "psi_categorical": lambda: ((_codes(), _codes().flip(0)), {"num_categories": 3, "floor": 1e-4}),
    "ks_test": lambda: ((_ref(), _cur()), {}),
    "chi_square_test": lambda: ((_codes(), _codes().flip(0)), {"num_categories": 3}),
}

BAD = [
    Bad("psi", lambda: ((torch.zeros(0, 2), _cur()), {}), "reference", "an empty reference"),
    Bad("psi", lambda: ((_ref(), torch.zeros(0, 2)), {}), "current", "an empty window"),
    Bad("psi", lambda: ((_ref(), torch.zeros(5, 3)), {}), "current", "a window with another number of features"),
    Bad("psi", lambda: ((_ref(), _cur()), {"bins": 1}), "bins", "one bin"),
    Bad("psi", lambda: ((_ref(), _cur()), {"bins": 2.5}), "bins", "a fractional number of bins"),
    Bad("psi", lambda: ((_ref(), _cur()), {"floor": 0.0}), "floor", "no floor: an empty bin is infinite"),
    Bad("ks_test", lambda: ((torch.zeros(2, 2, 2), torch.zeros(2, 2, 2)), {}), "reference", "a 3-d array"),
    Bad("ks_test", lambda: ((np.array(["a", "b"]), _cur()), {}), "reference", "text instead of numbers"),
    Bad("ks_test", lambda: ((torch.tensor([True, False]), torch.tensor([True])), {}), "reference", "booleans"),
    Bad("chi_square_test", lambda: ((torch.tensor([0, -1]), torch.tensor([0])), {}), "reference",
        "a negative category code"),
    Bad("chi_square_test", lambda: ((torch.tensor([0.0, 1.0]), torch.tensor([0.5])), {}), "current",
        "a fractional category code"),
    Bad("psi_categorical", lambda: ((_codes(), _codes()), {"num_categories": 2}), "num_categories",
        "fewer categories than codes"),
]

EXEMPT = {"TwoSampleTest": "a frozen record, returned by ks_test and chi_square_test"}

KNOWN_FAILURES = set()
