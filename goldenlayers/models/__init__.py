"""Loading models and reaching into them through architecture adapters."""

from goldenlayers.models.adapters import ADAPTERS, ArchitectureAdapter, adapter_for
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.load import load_model
from goldenlayers.models.presets import DEFAULT_MODEL, PRESETS

__all__ = ["ADAPTERS", "ArchitectureAdapter", "DEFAULT_MODEL", "ModelHandle", "PRESETS",
           "adapter_for", "load_model"]
