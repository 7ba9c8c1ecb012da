"""A model registry in the style of timm's ``_registry.py``: a decorator and a dict, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from cxreader.errors import ConfigError

_MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name."""
    name = factory.__name__
    if name in _MODEL_FACTORIES:
        raise ValueError(f"model {name!r} is registered twice")
    _MODEL_FACTORIES[name] = factory
    return factory


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name (``chexnet_densenet121``, ``densenet_small``)."""
    try:
        factory = _MODEL_FACTORIES[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None
    return factory(**kwargs)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODEL_FACTORIES)
