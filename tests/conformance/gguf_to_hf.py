"""Turn the bundled SmolLM2 GGUF into a Hugging Face model folder, offline, for `transformers serve`.

    .servers/transformers/bin/python tests/conformance/gguf_to_hf.py GGUF_FILE OUT_DIR

Run by `install_servers.py` with the transformers venv's Python (this file imports transformers,
which nbllm's own environment does not have). transformers reads GGUF weights, but the model it
makes is marked quantized and refuses `save_pretrained`, and its config names no architecture
(which `transformers serve` needs); so the weights are copied into a plain model built from the
same config, and that is saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer


def convert(gguf: Path, out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(loaded).__name__]
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
