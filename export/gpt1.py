"""GPT-1 (`openai-gpt`, OpenAIGPTLMHeadModel) in the terms of GPT-2's graph.

Optimum has no ONNX exporter for GPT-1, so its graph is built from the PyTorch
checkpoint's weights by fast_graph.py, like GPT-2's. GPT-1 is GPT-2's parent;
what differs, and where it is handled:
- post-LayerNorm blocks (x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))) and no final
  LayerNorm: fast_graph.build builds them for config.json's model_type "openai-gpt";
- `afn` instead of `activation_function`, where "gelu" means GPT-2's tanh
  approximation (transformers' ACT_FNS): `activation` below;
- embeddings named tokens_embed / positions_embed: renamed to wte / wpe here;
- 512 positions, 40,478 tokens, no bos/eos, and a lowercasing BPE with `</w>` word
  ends: all carried by config.json and tokenizer.json, nothing in the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# transformers' modeling_openai.ACT_FNS, by GPT-2's activation_function names.
AFN = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}
RENAMED = {"transformer.tokens_embed.weight": "transformer.wte.weight", "transformer.positions_embed.weight": "transformer.wpe.weight"}


def activation(config: dict) -> str:
    """The MLP's activation by GPT-2's activation_function names (GPT-1 configs say `afn`)."""
    if config.get("model_type") == "openai-gpt":
        afn = config.get("afn", "gelu")
        return AFN.get(afn, afn)
    return config.get("activation_function", "gelu_new")


def read_weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """Every weight of a GPT-1 checkpoint by GPT-2's parameter names (float32 arrays)."""
    import torch
    from transformers import OpenAIGPTLMHeadModel

    model = OpenAIGPTLMHeadModel.from_pretrained(checkpoint, dtype=torch.float32)
    # Views of the tensors (numpy keeps each tensor alive): the weights are held once, not twice.
    weights = {RENAMED.get(name, name): tensor.detach().numpy() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)  # tied to tokens_embed: the graph reads wte
    del model
    return weights
