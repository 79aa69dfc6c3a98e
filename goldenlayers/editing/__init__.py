"""Knowledge editors: ROME, R-ROME, EMMET and MEMIT at any layer, with exact undo and patches.

    editor = get_editor("r-rome", profile="default", v_num_grad_steps=25)
    editor.config_for(handle)   # the resolved config: the table's row (profiles.py), then overrides
    with editor.edited(handle, [request], layer) as result:
        ...  # edited here; restored bit for bit on exit
"""

from goldenlayers.editing import emmet, memit, r_rome, rome  # noqa: F401  (register the editors)
from goldenlayers.editing.base import (EDITORS, EditResult, Editor, LayerUpdate, RequestEdit,
                                       editor_class, get_editor)
from goldenlayers.editing.cache import EditCache
from goldenlayers.editing.config import (EditConfig, EmmetConfig, MemitConfig, RomeConfig,
                                         RRomeConfig, config_record, read_config_record)
from goldenlayers.editing.errors import ConfigError, EditError, PatchError
from goldenlayers.editing.profiles import DEFAULTS, PROFILES, fluency_procedure, model_family
from goldenlayers.editing.patches import (Patch, RemovalReport, apply_patch, load_patch,
                                          remove_patch, save_patch)

__all__ = ["DEFAULTS", "EDITORS", "PROFILES", "ConfigError", "EditCache", "EditConfig", "EditError",
           "EditResult", "Editor", "EmmetConfig", "LayerUpdate", "MemitConfig", "Patch",
           "PatchError", "RRomeConfig", "RemovalReport", "RequestEdit", "RomeConfig", "apply_patch",
           "config_record", "editor_class", "fluency_procedure", "get_editor", "load_patch",
           "model_family", "read_config_record", "remove_patch", "save_patch"]
