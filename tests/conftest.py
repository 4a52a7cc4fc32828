import numpy as np
import pytest
import torch


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def relative_adjoint_error(op, x: torch.Tensor, y: torch.Tensor) -> float:
    """|<Ax, y> − <x, Aᴴy>| / |<Ax, y>| in float64."""
    lhs = float((op.A(x) * y).sum())
    rhs = float((x * op.A_adjoint(y)).sum())
    return abs(lhs - rhs) / abs(lhs)
