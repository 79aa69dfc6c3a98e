"""Knowledge editors: ROME, R-ROME, EMMET and MEMIT at any layer, with exact undo and patches.

    editor = get_editor("r-rome", v_num_grad_steps=25)
    with editor.edited(handle, [request], layer) as result:
        ...  # edited here; restored bit for bit on exit
"""

from goldenlayers.editing import emmet, memit, r_rome, rome  # noqa: F401  (register the editors)
from goldenlayers.editing.base import (EDITORS, EditResult, Editor, LayerUpdate, RequestEdit,
                                       get_editor)
from goldenlayers.editing.cache import EditCache
from goldenlayers.editing.config import (ConfigError, EditConfig, EmmetConfig, MemitConfig,
                                         RomeConfig, RRomeConfig)
from goldenlayers.editing.errors import EditError, PatchError
from goldenlayers.editing.patches import (Patch, RemovalReport, apply_patch, load_patch,
                                          remove_patch, save_patch)

__all__ = ["EDITORS", "ConfigError", "EditCache", "EditConfig", "EditError", "EditResult", "Editor",
           "EmmetConfig", "LayerUpdate", "MemitConfig", "Patch", "PatchError", "RRomeConfig",
           "RemovalReport", "RequestEdit", "RomeConfig", "apply_patch", "get_editor", "load_patch",
           "remove_patch", "save_patch"]
