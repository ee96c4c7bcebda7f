"""The export folder's contract, declared once: file names, manifest format and
the decoder graph's I/O names (Optimum's `text-generation-with-past` names).

The exporter writes to it and the runtime checks against it.
"""

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"

MANIFEST_FORMAT = "gpt2onnx-manifest"
MANIFEST_VERSION = 1

# Inputs of Optimum's GPT-2 decoder with past.
INPUT_IDS = "input_ids"  # int64 [batch, seq]
ATTENTION_MASK = "attention_mask"  # int64 [batch, past + seq]
POSITION_IDS = "position_ids"  # int64 [batch, seq]
# Outputs.
LOGITS = "logits"  # float32 [batch, seq, vocab]


def past_names(layer: int) -> tuple[str, str]:
    """Input names of layer `layer`'s cached key and value: [batch, n_head, past, head_dim]."""
    return f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def present_names(layer: int) -> tuple[str, str]:
    """Output names of layer `layer`'s key and value: [batch, n_head, past + seq, head_dim]."""
    return f"present.{layer}.key", f"present.{layer}.value"


def io_signature(n_layer: int, dtype: str = "float32") -> dict:
    """The manifest's `io` block: name, element type and symbolic shape of each tensor."""
    kv_in = ["batch_size", "n_head", "past_sequence_length", "head_dim"]
    kv_out = ["batch_size", "n_head", "past_sequence_length + sequence_length", "head_dim"]
    inputs = [
        {"name": INPUT_IDS, "dtype": "int64", "shape": ["batch_size", "sequence_length"]},
        {"name": ATTENTION_MASK, "dtype": "int64", "shape": ["batch_size", "past_sequence_length + sequence_length"]},
        {"name": POSITION_IDS, "dtype": "int64", "shape": ["batch_size", "sequence_length"]},
    ]
    outputs = [{"name": LOGITS, "dtype": dtype, "shape": ["batch_size", "sequence_length", "vocab_size"]}]
    for layer in range(n_layer):
        inputs += [{"name": n, "dtype": dtype, "shape": kv_in} for n in past_names(layer)]
        outputs += [{"name": n, "dtype": dtype, "shape": kv_out} for n in present_names(layer)]
    return {"inputs": inputs, "outputs": outputs}


def input_names(n_layer: int) -> list[str]:
    """Every graph input (the graph itself may list them in another order)."""
    return [tensor["name"] for tensor in io_signature(n_layer)["inputs"]]


def output_names(n_layer: int) -> list[str]:
    """Every graph output: logits, then each layer's present key and value."""
    return [tensor["name"] for tensor in io_signature(n_layer)["outputs"]]
