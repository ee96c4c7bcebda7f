"""Every GPT2Config option public checkpoints set: exported, and equal to transformers.

One small random checkpoint per option (its biases and LayerNorms perturbed, so an
option the graph ignored would show), exported with the default command. Each must
validate within 1e-4 of PyTorch, keep the graph the README's table says (gpt2onnx's
GroupQueryAttention graph, or Optimum's with the reason in the report), and
generate transformers' greedy ids. The README's "GPT2Config options" table lists
the same options.
"""

from __future__ import annotations

import pytest
from conftest import hf_greedy, run_cli
from test_export import assert_one_line_error

from gpt2onnx.export.pipeline import export_model
from gpt2onnx.export.random_model import make_random_gpt2
from gpt2onnx.runtime import load

# Slow tier (pytest -m slow): every option is an export of its own, compared with transformers (~70 s).
pytestmark = pytest.mark.slow

SHAPE = dict(n_layer=2, n_head=4, n_embd=64, n_positions=256, initializer_range=0.2, perturb=0.1)

# option -> (GPT2Config settings, the graph the export keeps: "gqa" or "optimum")
OPTIONS = {
    "n_inner": ({"n_inner": 96}, "gqa"),
    "activation_function=gelu": ({"activation_function": "gelu"}, "gqa"),
    "activation_function=gelu_pytorch_tanh": ({"activation_function": "gelu_pytorch_tanh"}, "gqa"),
    "activation_function=gelu_fast": ({"activation_function": "gelu_fast"}, "gqa"),
    "activation_function=relu": ({"activation_function": "relu"}, "gqa"),
    "activation_function=gelu_python": ({"activation_function": "gelu_python"}, "gqa"),
    "activation_function=silu": ({"activation_function": "silu"}, "gqa"),
    "activation_function=swish": ({"activation_function": "swish"}, "gqa"),
    "activation_function=quick_gelu": ({"activation_function": "quick_gelu"}, "gqa"),
    "activation_function=tanh": ({"activation_function": "tanh"}, "optimum"),
    "layer_norm_epsilon": ({"layer_norm_epsilon": 1e-2}, "gqa"),
    "scale_attn_weights=false": ({"scale_attn_weights": False}, "gqa"),
    "scale_attn_by_inverse_layer_idx": ({"scale_attn_by_inverse_layer_idx": True}, "gqa"),
    "reorder_and_upcast_attn": ({"reorder_and_upcast_attn": True, "scale_attn_by_inverse_layer_idx": True}, "gqa"),
    "tie_word_embeddings=false": ({"tie_word_embeddings": False}, "gqa"),
    "vocab_size=50304": ({"vocab_size": 50304}, "gqa"),
    "n_positions=64": ({"n_positions": 64}, "gqa"),
    "head_dim=12": ({"n_embd": 60, "n_head": 5}, "optimum"),
    "dtype=float16": ({"dtype": "float16"}, "gqa"),
    # Settings that change nothing at inference, all at once at unusual values.
    "no-ops": (
        {
            "resid_pdrop": 0.5, "embd_pdrop": 0.5, "attn_pdrop": 0.5, "initializer_range": 0.3, "use_cache": False,
            "summary_type": "mean", "summary_use_proj": False, "summary_first_dropout": 0.5, "n_ctx": 2048,
            "architectures": ["GPT2DoubleHeadsModel"], "task_specific_params": {"text-generation": {"do_sample": True}},
            "pad_token_id": 0,
        },
        "gqa",
    ),
}
PROMPTS = ("Hello, my dog is cute", "The quick brown fox jumps over")


@pytest.fixture(scope="module", params=list(OPTIONS))
def option_export(request, tmp_path_factory):
    settings, graph = OPTIONS[request.param]
    root = tmp_path_factory.mktemp(request.param.replace("=", "-"))
    options = dict(settings)
    dtype = options.pop("dtype", None)
    checkpoint = make_random_gpt2(root / "checkpoint", **(SHAPE | options))
    if dtype:  # a checkpoint saved in float16, as many hub uploads are
        import torch
        from transformers import GPT2LMHeadModel

        GPT2LMHeadModel.from_pretrained(checkpoint).to(torch.float16).save_pretrained(checkpoint)
    report = export_model(str(checkpoint), root / "onnx")
    return request.param, graph, checkpoint, report


def test_option_exports_and_matches_transformers(option_export):
    name, graph, checkpoint, report = option_export
    assert report.validation["max_abs_diff"] < 1e-4, (name, report.validation)
    assert report.validation["top1_agreement"] == 1.0
    if graph == "gqa":
        assert report.graph["kv_cache"] == "shared" and report.graph["plain_graph_because"] is None, (name, report.graph)
    else:  # Optimum's graph, and the report says why
        assert report.graph["kv_cache"] == "concat" and report.graph["plain_graph_because"], (name, report.graph)
    model = load(report.output_dir, provider="cpu")
    for prompt in PROMPTS:
        ids = model.tokenizer.encode(prompt)
        got = model.generate(prompt, max_new_tokens=12, do_sample=False).sequences[0].token_ids
        assert list(got) == hf_greedy(checkpoint, ids, 12), (name, prompt)


def test_eos_token_id_of_a_fine_tune_ends_generation_as_transformers(tmp_path):
    """A fine-tune with its own end token: generation stops where transformers' does."""
    probe = make_random_gpt2(tmp_path / "probe", **SHAPE)
    ids = load(export_model(str(probe), tmp_path / "probe-onnx").output_dir, provider="cpu").tokenizer.encode(PROMPTS[0])
    eos = hf_greedy(probe, ids, 6)[3]  # the 4th greedy token becomes the end token
    checkpoint = make_random_gpt2(tmp_path / "checkpoint", **SHAPE, eos_token_id=eos, bos_token_id=eos)
    model = load(export_model(str(checkpoint), tmp_path / "onnx").output_dir, provider="cpu")
    assert model.generation_config.eos_token_ids == (eos,)
    got = model.generate(PROMPTS[0], max_new_tokens=12, do_sample=False).sequences[0]
    want = hf_greedy(checkpoint, ids, 12, eos_token_id=eos)
    assert list(got.token_ids) == want and want[-1] == eos and got.finish_reason == "eos"


def test_add_cross_attention_is_refused_in_one_line(tmp_path):
    checkpoint = make_random_gpt2(tmp_path / "checkpoint", **SHAPE, add_cross_attention=True)
    result = run_cli("export", str(checkpoint), str(tmp_path / "out"))
    assert_one_line_error(result, 2, "has add_cross_attention: it is the decoder of an encoder-decoder model")
    assert not (tmp_path / "out").exists()
