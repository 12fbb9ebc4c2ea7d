"""ComfyUI node pack: diversity distillation (Gandikota and Bau, "Distilling Diversity and Control in
Diffusion Models"). ComfyUI finds ``comfy_entrypoint`` and the web extension folder here; nothing is
imported or computed until ComfyUI asks for the nodes."""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes.extension import DiversityDistillationExtension

    return DiversityDistillationExtension()
