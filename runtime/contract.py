"""The export folder's contract, declared once: file names, manifest format and
the decoder graph's I/O names (Optimum's `text-generation-with-past` names), and the
classifier graph's (`text-classification`).

The exporter writes to it and the runtime checks against it.
"""

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"

MANIFEST_FORMAT = "gpt2onnx-manifest"
MANIFEST_VERSION = 1

# The manifest's `kv_cache`: how the graph keeps keys and values.
SHARED_KV = "shared"  # gpt2onnx's GroupQueryAttention graph: one buffer per layer, past and present, updated in place
CONCAT_KV = "concat"  # Optimum's graph: present = concat(past, new) every step (manifests without the key)
KV_LAYOUTS = (SHARED_KV, CONCAT_KV)

# The manifest's `architecture`: transformers' class name of the exported model, and what it does.
GPT2_LM = "GPT2LMHeadModel"  # GPT-2 with its language-model head: generation
OPENAI_GPT_LM = "OpenAIGPTLMHeadModel"  # the original GPT (GPT-1): generation
GPT2_CLASSIFIER = "GPT2ForSequenceClassification"  # GPT-2 with a classification head: label probabilities
TEXT_GENERATION, TEXT_CLASSIFICATION = "text-generation", "text-classification"  # Optimum's task names
TASKS = {GPT2_LM: TEXT_GENERATION, OPENAI_GPT_LM: TEXT_GENERATION, GPT2_CLASSIFIER: TEXT_CLASSIFICATION}

# Inputs of Optimum's GPT-2 decoder with past.
INPUT_IDS = "input_ids"  # int64 [batch, seq]
ATTENTION_MASK = "attention_mask"  # int64 [batch, past + seq]
POSITION_IDS = "position_ids"  # int64 [batch, seq]
LOGITS_TO_KEEP = "logits_to_keep"  # int64 [1], shared layout only: logits for the last k positions (transformers' name)
# Outputs.
LOGITS = "logits"  # float32 [batch, seq, vocab]

# The shared graph's second part (the manifest's `packed_chunk`): one prompt chunk on one more row,
# run in the same pass as the rows above, so a step's decode tokens and a prompt's chunk read the
# weights once. Each name is its first part's with a "chunk_" prefix.
CHUNK_IDS = "chunk_ids"  # int64 [1, chunk]
CHUNK_ATTENTION_MASK = "chunk_attention_mask"  # int64 [1, chunk_total]: sums to the tokens the chunk's row holds after the step
CHUNK_POSITION_IDS = "chunk_position_ids"  # int64 [1, chunk]
CHUNK_LOGITS_TO_KEEP = "chunk_logits_to_keep"  # int64 [1]: logits for the chunk's last k positions (k may be 0)
CHUNK_LOGITS = "chunk_logits"  # [1, chunk_logits_to_keep, vocab]


def past_names(layer: int) -> tuple[str, str]:
    """Input names of layer `layer`'s cached key and value: [batch, n_head, past, head_dim]."""
    return f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def present_names(layer: int) -> tuple[str, str]:
    """Output names of layer `layer`'s key and value: [batch, n_head, past + seq, head_dim]."""
    return f"present.{layer}.key", f"present.{layer}.value"


def chunk_past_names(layer: int) -> tuple[str, str]:
    """Input names of the chunk row's cached key and value in layer `layer`: [1, n_head, max_sequence_length, head_dim]."""
    return tuple(f"chunk_{name}" for name in past_names(layer))


def chunk_present_names(layer: int) -> tuple[str, str]:
    """Output names of the chunk row's key and value in layer `layer` (the same buffer as its past)."""
    return tuple(f"chunk_{name}" for name in present_names(layer))


def io_signature(n_layer: int, dtype: str = "float32", kv_cache: str = CONCAT_KV, kv_dtype: str | None = None, packed_chunk: bool = False) -> dict:
    """The manifest's `io` block: name, element type and symbolic shape of each tensor.
    The KV cache's element type is `dtype` unless kv_dtype says otherwise ("int8").
    packed_chunk (shared layout only): the graph also takes one prompt chunk beside the rows.

    In the shared layout past and present are one buffer of capacity max_sequence_length,
    and row r of the attention mask sums to the tokens row r holds after the step.
    """
    if kv_cache == SHARED_KV:
        kv_in = kv_out = ["batch_size", "n_head", "max_sequence_length", "head_dim"]
    else:
        kv_in = ["batch_size", "n_head", "past_sequence_length", "head_dim"]
        kv_out = ["batch_size", "n_head", "past_sequence_length + sequence_length", "head_dim"]
    inputs = [
        {"name": INPUT_IDS, "dtype": "int64", "shape": ["batch_size", "sequence_length"]},
        {"name": ATTENTION_MASK, "dtype": "int64", "shape": ["batch_size", "past_sequence_length + sequence_length"]},
        {"name": POSITION_IDS, "dtype": "int64", "shape": ["batch_size", "sequence_length"]},
    ]
    logits_shape = ["batch_size", "sequence_length", "vocab_size"]
    if kv_cache == SHARED_KV:
        inputs.append({"name": LOGITS_TO_KEEP, "dtype": "int64", "shape": [1]})
        logits_shape = ["batch_size", "logits_to_keep", "vocab_size"]
    outputs = [{"name": LOGITS, "dtype": dtype, "shape": logits_shape}]
    kv_dtype = kv_dtype or dtype
    for layer in range(n_layer):
        inputs += [{"name": n, "dtype": kv_dtype, "shape": kv_in} for n in past_names(layer)]
        outputs += [{"name": n, "dtype": kv_dtype, "shape": kv_out} for n in present_names(layer)]
    if packed_chunk and kv_cache == SHARED_KV:
        inputs += [
            {"name": CHUNK_IDS, "dtype": "int64", "shape": [1, "chunk_length"]},
            {"name": CHUNK_ATTENTION_MASK, "dtype": "int64", "shape": [1, "chunk_total_sequence_length"]},
            {"name": CHUNK_POSITION_IDS, "dtype": "int64", "shape": [1, "chunk_length"]},
            {"name": CHUNK_LOGITS_TO_KEEP, "dtype": "int64", "shape": [1]},
        ]
        outputs.append({"name": CHUNK_LOGITS, "dtype": dtype, "shape": [1, "chunk_logits_to_keep", "vocab_size"]})
        chunk_kv = [1, "n_head", "chunk_max_sequence_length", "head_dim"]
        for layer in range(n_layer):
            inputs += [{"name": n, "dtype": kv_dtype, "shape": chunk_kv} for n in chunk_past_names(layer)]
            outputs += [{"name": n, "dtype": kv_dtype, "shape": chunk_kv} for n in chunk_present_names(layer)]
    return {"inputs": inputs, "outputs": outputs}


def classifier_signature(dtype: str = "float32") -> dict:
    """The manifest's `io` block for a text classifier (Optimum's `text-classification` graph): whole
    right-padded texts in, one row of label scores per text out, read at each text's last token that
    is not the pad token (transformers' rule, built into the graph). No KV cache, no positions."""
    return {
        "inputs": [
            {"name": INPUT_IDS, "dtype": "int64", "shape": ["batch_size", "sequence_length"]},
            {"name": ATTENTION_MASK, "dtype": "int64", "shape": ["batch_size", "sequence_length"]},
        ],
        "outputs": [{"name": LOGITS, "dtype": dtype, "shape": ["batch_size", "num_labels"]}],
    }


def input_names(n_layer: int, kv_cache: str = CONCAT_KV, packed_chunk: bool = False) -> list[str]:
    """Every graph input (the graph itself may list them in another order)."""
    return [tensor["name"] for tensor in io_signature(n_layer, kv_cache=kv_cache, packed_chunk=packed_chunk)["inputs"]]


def output_names(n_layer: int, kv_cache: str = CONCAT_KV, packed_chunk: bool = False) -> list[str]:
    """Every graph output: logits, then each layer's present key and value (then the chunk part's)."""
    return [tensor["name"] for tensor in io_signature(n_layer, kv_cache=kv_cache, packed_chunk=packed_chunk)["outputs"]]
