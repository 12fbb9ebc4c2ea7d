"""Model files for tests and benchmarks: tiny real ComfyUI models on the CPU, full-size random weights of the released
layouts, LoRAs, quantized (fp8_scaled, comfy_quant) and GGUF files, DreamSim fixtures."""
