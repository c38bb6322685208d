"""The model behind GazeRedirector: :func:`load_redirect_model` loads the given weights
or the bundled default and, where it can, the accelerated model (deepwarp_fast.accelerate);
:class:`NoDefaultWeightsWarning` says when an install ships no default weights."""
from __future__ import annotations

import warnings


class NoDefaultWeightsWarning(UserWarning):
    """This install ships no default weights: the model is untrained (outputs = inputs)."""


def load_redirect_model(weights=None, backend: str = "auto", device="cpu", fuse: bool = True):
    """The DeepWarp model from ``weights`` (a path) or the bundled default, in eval mode.

    ``fuse``: the accelerated model (deepwarp_fast.accelerate: BN folded, fused ops,
    the fastest backend; same outputs), or where that cannot be built, the model with
    its BatchNorms folded. Where this install ships no default weights, an untrained
    identity-initialised model with a NoDefaultWeightsWarning.
    """
    from ..model import DeepWarp
    from ..weights import default_weights_path, load_model

    if weights is None and default_weights_path() is None:
        warnings.warn("no default weights are bundled with this install; using an untrained, "
                      "identity-initialised model (the eyes come out unchanged); pass weights=...",
                      NoDefaultWeightsWarning, stacklevel=2)
        model = DeepWarp(backend=backend).to(device).eval()
    else:
        model = load_model(weights, backend=backend, device=device)
    if not fuse:
        return model
    try:
        from ..accelerate import accelerate

        return accelerate(model, backend=backend).eval()
    except Exception as exc:  # an optional speed-up: the folded model computes the same
        warnings.warn(f"the accelerated model is unavailable ({type(exc).__name__}: {exc}); "
                      "using the BN-folded PyTorch model", stacklevel=2)
        return model.fuse_bn()
