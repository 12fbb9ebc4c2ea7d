"""The perceptual networks of ``ddistill.embedding`` inside ComfyUI: weights found through folder_paths
(``models/dreamsim``, plus extra_model_paths.yaml entries) and placement through ComfyUI's model management (a
ModelPatcher loaded with ``load_models_gpu``, unloaded by ComfyUI when another model needs the memory)."""

from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths

from ..ddistill import embedding

CHUNK_ACTIVATION_BYTES = 64 * 1024 * 1024  # activations of one image: a generous bound (ViT-B/16 at 224 px, fp32)


def register_folder() -> list[str]:
    """Registers ``models/dreamsim`` with ComfyUI's folder_paths (idempotent); returns the search folders. Called at
    first use, when a DreamSim backend looks for its weights: not at import, and not in ``ComfyExtension.on_load``,
    which ComfyUI 0.3.75 never calls (0.33 does)."""
    folder_paths.add_model_folder_path(
        embedding.FOLDER_NAME, os.path.join(folder_paths.models_dir, embedding.FOLDER_NAME)
    )
    return folder_paths.get_folder_paths(embedding.FOLDER_NAME)


class ComfyPlacer:
    """``placer(net, chunk_size) -> device`` for a backend: the network as a ModelPatcher on ComfyUI's device."""

    def __init__(self):
        self.patcher = None

    def __call__(self, net, chunk_size: int):
        if self.patcher is None or self.patcher.model is not net:
            self.patcher = comfy.model_patcher.ModelPatcher(
                net, load_device=mm.get_torch_device(), offload_device=mm.text_encoder_offload_device()
            )
        mm.load_models_gpu([self.patcher], memory_required=chunk_size * CHUNK_ACTIVATION_BYTES, force_full_load=True)
        return self.patcher.load_device

    def forget(self) -> None:
        self.patcher = None


def get_backend(
    name: str = embedding.EFFNET_BACKEND, allow_download: bool = False, weights_dir: str | None = None
) -> embedding.Backend:
    """The backend called ``name`` placed by ComfyUI (the core's cache, its entry for ``ComfyPlacer``), so that its
    network loads once per process. DreamSim weights come from ``models/dreamsim`` (folder_paths, registered by
    ``register_folder`` when the backend first looks for them), or from ``weights_dir`` when given."""
    folders = None if weights_dir else register_folder
    return embedding.get_backend(
        name, weights_dir=weights_dir, allow_download=allow_download, placer=ComfyPlacer(), folders=folders
    )
