"""A cache for constant tensors (interpolation matrices, window indices and masks) built from hashable arguments."""
from __future__ import annotations

from functools import lru_cache, wraps
from typing import Callable, TypeVar

import torch

Build = TypeVar("Build", bound=Callable)


def constant_tensor_cache(maxsize: int = 128) -> Callable[[Build], Build]:
    """Decorator: build(*args) is computed once per arguments (sizes, device, dtype: all hashable) in eager mode.

    It is built outside inference mode, so a tensor first built by nnUNetv2_predict still serves a training step.
    Under torch.compile build(*args) is called directly and traced into the graph (the compiler would skip the
    Python cache anyway, with a warning).
    """
    def decorate(build: Build) -> Build:
        @lru_cache(maxsize=maxsize)
        def cached(*args):
            with torch.inference_mode(False):
                return build(*args)

        @wraps(build)
        def get(*args):
            if torch.compiler.is_compiling():
                return build(*args)
            return cached(*args)

        return get

    return decorate
