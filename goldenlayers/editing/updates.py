"""The closed-form weight updates (docs/method.md, "The editors"), as pure functions on tensors.

Each returns low-rank factors (left (d_out, r), right (d_in, r)) with delta W = left @ right.T, so a
patch stores r (d_out + d_in) numbers instead of d_out d_in. Arithmetic is in float64.
"""

from __future__ import annotations

import torch


class UpdateError(ArithmeticError):
    """The update is undefined (near-zero denominator) or not finite."""


Factors = tuple[torch.Tensor, torch.Tensor]  # (left (d_out, r), right (d_in, r))


def rank_one_update(residual: torch.Tensor, u: torch.Tensor, key: torch.Tensor,
                    tol: float = 1e-6) -> Factors:
    """ROME's rank-one update: delta W = residual u^T / (u . key), so that (W + delta W) key =
    W key + residual. u = C^-1 k* (or k* without mom2 adjustment); key = k* for R-ROME, the bare
    prompt's key for ROME. residual (d_out,), u (d_in,), key (d_in,)."""
    residual, u, key = residual.double(), u.double(), key.double()
    denominator = u @ key
    scale = u.norm() * key.norm()
    if not torch.isfinite(denominator) or denominator.abs() <= tol * scale:
        raise UpdateError(f"near-zero denominator u.k = {float(denominator):.3g} "
                          f"(|u| |k| = {float(scale):.3g}, tolerance {tol:g} of it)")
    return _finite((residual / denominator)[:, None], u[:, None])


def emmet_update(residuals: torch.Tensor, keys: torch.Tensor, whitened_keys: torch.Tensor,
                 lam: float) -> Factors:
    """EMMET: delta W = R (K^T C0^-1 K + lam I)^-1 K^T C0^-1.

    residuals R = V - W K (d_out, E); keys K (d_in, E); whitened_keys C0^-1 K (d_in, E).
    A singular (K^T C0^-1 K + lam I) falls back to its pseudo-inverse.
    """
    residuals, keys, whitened = residuals.double(), keys.double(), whitened_keys.double()
    gram = keys.T @ whitened + lam * torch.eye(keys.shape[1], dtype=torch.float64,
                                               device=keys.device)  # (E, E)
    solution, info = torch.linalg.solve_ex(gram.T, residuals.T)  # (E, d_out) = (R gram^-1)^T
    if int(info.max()) != 0 or not torch.isfinite(solution).all():
        solution = (residuals @ torch.linalg.pinv(gram)).T
    return _finite(solution.T, whitened)


def memit_update(residuals: torch.Tensor, keys: torch.Tensor, second_moment: torch.Tensor,
                 weight: float) -> Factors:
    """MEMIT's least squares: delta W = R K^T (weight C + K K^T)^-1, i.e. left = R and
    right = (weight C + K K^T)^-1 K. residuals (d_out, E), keys (d_in, E), C (d_in, d_in)."""
    residuals, keys = residuals.double(), keys.double()
    system = weight * second_moment.double() + keys @ keys.T  # (d_in, d_in)
    return _finite(residuals, torch.linalg.solve(system, keys))


def _finite(left: torch.Tensor, right: torch.Tensor) -> Factors:
    if not (torch.isfinite(left).all() and torch.isfinite(right).all()):
        raise UpdateError("the update is not finite (NaN or infinity)")
    return left, right
