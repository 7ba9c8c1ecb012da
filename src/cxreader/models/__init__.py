"""Models: a registry (``create_model``) and the CheXNet DenseNet classifiers."""

from cxreader.models._registry import create_model, list_models, register_model
from cxreader.models.chexnet import CheXNet

__all__ = ["CheXNet", "create_model", "list_models", "register_model"]
