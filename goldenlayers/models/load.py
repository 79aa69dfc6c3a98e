"""``load_model``: a preset name, a Hugging Face id or a local folder -> a ``ModelHandle``.

GGUF presets are dequantized once and cached as safetensors (a second load takes well under a
second). The cache is written under a temporary name and renamed into place, so a crash or a full
disk never leaves a half-written model; a cached copy damaged anyway (truncated weights, a broken
config) is found from the safetensors headers when read, and rebuilt with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import torch

from goldenlayers.errors import GoldenLayersError
from goldenlayers.files.atomic import remove_stale, staging_prefix
from goldenlayers.files.tensors import safetensors_problem
from goldenlayers.models.adapters import adapter_for
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.presets import PRESETS, Preset, tiny_config

log = logging.getLogger(__name__)

TINY_SEED = 0
TOKENIZER_OF_TINY_MODELS = "smollm2-135m"


class ModelLoadError(GoldenLayersError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("GOLDENLAYERS_CACHE", Path.home() / ".cache" / "goldenlayers"))


DTYPES = ("float32", "bfloat16", "float16")  # what the editors and locators are made for


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``dtype`` as a torch dtype, if it is one of ``DTYPES`` (float64 is accepted too)."""
    name = str(dtype).removeprefix("torch.")
    if name not in (*DTYPES, "float64"):
        raise GoldenLayersError(f"unsupported dtype {str(dtype)!r}; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists here; ``GoldenLayersError`` naming it otherwise."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GoldenLayersError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index or 0) >= count:
            raise GoldenLayersError(f"device {str(device)!r} is not available: this machine has "
                                    f"{count} CUDA device(s); use cpu")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise GoldenLayersError(f"device {str(device)!r} is not available here; use cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise GoldenLayersError(f"device {str(device)!r} is not supported; use cpu, cuda, cuda:N or mps")
    return resolved


def load_model(name_or_path: str, device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32) -> ModelHandle:
    """Load a preset (see ``PRESETS``), a local folder, or a Hugging Face id, in eval mode."""
    dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    preset = PRESETS.get(name_or_path)
    if preset is not None and preset.kind == "gguf-package":
        folder, source = _cached_gguf_folder(preset), preset.origin
    elif preset is not None and preset.kind == "tiny":
        return _tiny_model(preset, device, dtype)
    elif preset is not None:
        folder, source = preset.hub_id, preset.origin
    else:
        folder, source = name_or_path, f"{name_or_path}"
    model, tokenizer = _from_pretrained(str(folder), dtype, name_or_path)
    return _handle(model.to(device), tokenizer, name_or_path, source)


def _handle(model, tokenizer, name: str, source: str) -> ModelHandle:
    model.eval()
    model.requires_grad_(False)  # editors and locators switch on gradients where they need them
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    handle = ModelHandle(model=model, tokenizer=tokenizer, adapter=adapter_for(model), name=name,
                         source=source)
    handle.fingerprint  # noqa: B018 - fixed now, before any edit can change the weights
    return handle


def _from_pretrained(folder: str, dtype: torch.dtype, name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(folder).is_dir()
    if not local and looks_like_path(folder):
        what = "is a file, not a model folder" if Path(folder).exists() else "no such folder"
        raise ModelLoadError(f"{name!r}: {what} (a local model is a folder saved by "
                             f"save_pretrained; presets: {', '.join(PRESETS)})")
    if not local and "/" not in folder and folder not in {p.hub_id for p in PRESETS.values()}:
        presets = ", ".join(PRESETS)
        raise ModelLoadError(
            f"{name!r} is neither a preset ({presets}), a local folder, nor a Hugging Face id "
            f"of the form owner/name"
        )

    def load(**kwargs):
        return (AutoTokenizer.from_pretrained(folder, **kwargs),
                AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs))

    if local:
        if not (Path(folder) / "config.json").is_file():
            raise ModelLoadError(f"{name!r} is a folder but not a saved model (no config.json in it)")
        problem = weights_problem(Path(folder))
        if problem is not None:
            raise ModelLoadError(f"cannot load {name!r}, a damaged model folder: {problem}")
        try:
            tokenizer, model = load()
        except (OSError, ValueError, KeyError) as error:  # transformers' errors for broken folders
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(f"could not load {name!r} from the local folder: {first}") from error
        return model, tokenizer
    try:
        tokenizer, model = load(local_files_only=True)  # a copy in the hub cache needs no network
    except OSError:
        # Without this check, transformers retries an unreachable hub for about a minute.
        if not _hub_reachable():
            raise ModelLoadError(
                f"{name!r} ({folder}) is not in the local Hugging Face cache and the hub cannot be "
                f"reached (offline?); download it where there is network, or pass a local folder"
            ) from None
        try:
            tokenizer, model = load()
        except OSError as error:
            raise ModelLoadError(f"could not load {name!r} from the Hugging Face hub: {error}") from error
    return model, tokenizer


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


# --- GGUF presets ---------------------------------------------------------------------------------


def looks_like_path(name: str) -> bool:
    """A name the user meant as a local path (./x, ../x, /x, ~/x, or an existing file)."""
    return name.startswith((".", "/", "~", os.sep)) or Path(name).is_file()


def model_folder_problem(folder: Path) -> str | None:
    """Why a saved model folder is damaged (config or tokenizer files that do not parse, weights
    missing or truncated), or None when it looks whole; reads headers only."""
    for name in ("config.json", *TOKENIZER_FILES):
        if name == "config.json" or (folder / name).exists():
            problem = _json_problem(folder / name)
            if problem is not None:
                return problem
    if not list(folder.glob("*.safetensors")):
        return "no *.safetensors weights"
    return weights_problem(folder)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        return f"{path.name}: nested too deeply"
    except (OSError, ValueError) as error:
        return f"{path.name}: {error}"
    return None


def weights_problem(folder: Path) -> str | None:
    """Why the folder's safetensors weights are damaged (a shard missing, a file truncated: the
    file's name first), or None; reads headers only."""
    weights = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as error:
            return f"{index.name}: {error}"
        missing = sorted(shards - {p.name for p in weights})
        if missing:
            return f"missing shards {', '.join(missing)}"
    return next(filter(None, map(safetensors_problem, weights)), None)


def _cached_gguf_folder(preset: Preset) -> Path:
    folder = cache_dir() / "models" / preset.name
    if folder.exists():
        problem = model_folder_problem(folder)
        if problem is None:
            return folder
        log.warning("the cached model %s is damaged (%s); rebuilding it", folder, problem)
        _discard(folder)
    gguf_path = preset.gguf()
    log.info("converting %s from %s (once; cached in %s)", preset.name, gguf_path, folder)
    model, tokenizer = _from_gguf(gguf_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)  # what a conversion killed midway left
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(folder), suffix=".tmp", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, folder)
    except OSError:
        if model_folder_problem(folder) is not None:  # not another process's finished copy
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only there if the rename did not happen
    return folder


def _discard(folder: Path) -> None:
    """Move a damaged cache entry aside (one rename, so no reader sees it half-removed), then
    remove it."""
    trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}-damaged-", dir=folder.parent))
    try:
        os.replace(folder, trash / folder.name)
    except OSError:
        pass  # another process moved or rebuilt it first
    shutil.rmtree(trash, ignore_errors=True)


def _from_gguf(gguf_path: Path):
    """Dequantized model and tokenizer, rebuilt without the quantization marker so it can be saved."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return model, tokenizer


# --- tiny random presets --------------------------------------------------------------------------


def tiny_tokenizer():
    """The tokenizer tiny models share (SmolLM2's), from the converted preset's cache."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_cached_gguf_folder(PRESETS[TOKENIZER_OF_TINY_MODELS]))


def _tiny_model(preset: Preset, device, dtype: torch.dtype) -> ModelHandle:
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = tiny_config(preset.tiny_architecture, len(tokenizer), tokenizer.pad_token_id,
                         tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return _handle(model.to(device), tokenizer, preset.name, preset.origin)
