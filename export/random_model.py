"""Random-init GPT-2 checkpoints with GPT-2's real tokenizer, and GPT-1 checkpoints with
a small BPE trained here in GPT-1's format, and GPT-2 classifiers, for tests, demos and
benchmarks.

Random weights make timings real and parity tests exact without downloading
anything. `python -m gpt2onnx.export.random_model DIR --n-layer 2 ...` writes one
(`--gpt1` for GPT-1, `--classifier negative,positive` for a classifier).
"""

from __future__ import annotations

import argparse
from pathlib import Path

TOKENIZER_DIR = Path(__file__).parent / "assets" / "gpt2-tokenizer"  # GPT-2's vocab.json + merges.txt (MIT)
# A small GPT-1-format BPE, trained once by train_gpt1_tokenizer and kept: tokenizers' BpeTrainer
# is not deterministic (tokenizers#1794: `</w>` tokens get ids in hash-map order, and ids break
# count ties), and every GPT-1 test model should tokenize the same way.
GPT1_TOKENIZER_DIR = Path(__file__).parent / "assets" / "gpt1-tokenizer"

# The real GPT-2 124M shape.
GPT2_SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024}


def gpt2_tokenizer():
    """GPT-2's fast tokenizer, built from the vendored vocab.json and merges.txt."""
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast(
        vocab_file=str(TOKENIZER_DIR / "vocab.json"),
        merges_file=str(TOKENIZER_DIR / "merges.txt"),
        model_max_length=1024,
    )


def make_random_gpt2(
    out_dir: str | Path,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    n_positions: int = 1024,
    seed: int = 0,
    initializer_range: float = 0.02,
    perturb: float = 0.0,
    **options: object,
) -> Path:
    """Save a random GPT2LMHeadModel of this shape, with GPT-2's tokenizer, to `out_dir`.

    GPT-2's initializer_range (0.02) gives nearly uniform next-token distributions;
    a larger one (0.5) gives peaked ones, as a trained model has. A fresh model's
    biases are 0 and its LayerNorms the identity, so a graph that dropped one would
    still match: `perturb` adds N(0, perturb) noise to every bias and LayerNorm
    parameter, as training does.
    """
    from transformers import GPT2LMHeadModel

    shape = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions, initializer_range=initializer_range)
    return _save_random_gpt2(GPT2LMHeadModel, out_dir, seed, perturb, shape | options)


def _save_random_gpt2(model_class, out_dir: str | Path, seed: int, perturb: float, settings: dict) -> Path:
    """Save a random `model_class` (a GPT-2 class of transformers) of GPT2Config(settings), over GPT-2's
    tokenizer's vocabulary and eos, with that tokenizer, to `out_dir`."""
    import torch
    from transformers import GPT2Config

    torch.manual_seed(seed)
    tokenizer = gpt2_tokenizer()
    vocabulary = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = model_class(GPT2Config(**(vocabulary | settings))).eval()
    _perturb(model, perturb)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_random_gpt2_classifier(
    out_dir: str | Path,
    labels: tuple[str, ...] = ("negative", "neutral", "positive"),
    pad_token_id: int | None = 50256,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    n_positions: int = 128,
    seed: int = 0,
    initializer_range: float = 0.2,
    perturb: float = 0.2,
) -> Path:
    """Save a random GPT2ForSequenceClassification with these label names (id2label) and GPT-2's
    tokenizer to `out_dir`. pad_token_id None leaves it unset, as some fine-tunes do. A large
    initializer_range keeps the probabilities apart; `perturb` as for make_random_gpt2."""
    from transformers import GPT2ForSequenceClassification

    settings = dict(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_positions=n_positions,
        initializer_range=initializer_range,
        pad_token_id=pad_token_id,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        architectures=["GPT2ForSequenceClassification"],
    )
    return _save_random_gpt2(GPT2ForSequenceClassification, out_dir, seed, perturb, settings)


def gpt1_tokenizer():
    """The kept GPT-1-format BPE (GPT1_TOKENIZER_DIR) as transformers' OpenAIGPTTokenizerFast."""
    from transformers import OpenAIGPTTokenizerFast

    return OpenAIGPTTokenizerFast(vocab_file=str(GPT1_TOKENIZER_DIR / "vocab.json"), merges_file=str(GPT1_TOKENIZER_DIR / "merges.txt"))


def train_gpt1_tokenizer(out_dir: Path, vocab_size: int = 1000):
    """A GPT-1-format BPE trained on the packaged calibration text, saved as vocab.json and
    merges.txt in `out_dir`, loaded by transformers' OpenAIGPTTokenizerFast. It made the kept
    GPT1_TOKENIZER_DIR (train_gpt1_tokenizer(GPT1_TOKENIZER_DIR) makes another).

    GPT-1's real files (40,478 tokens) can't be downloaded here; this one has its format:
    BERT's lowercasing normalizer and pre-tokenizer, `</w>` word ends, an <unk> token."""
    import json
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import OpenAIGPTTokenizerFast

    text = (Path(__file__).parent / "assets" / "calibration.txt").read_text(encoding="utf-8")
    bpe = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.BertNormalizer(lowercase=True)
    bpe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bpe.decoder = decoders.BPEDecoder(suffix="</w>")
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)  # every ASCII word has tokens
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>"], end_of_word_suffix="</w>", initial_alphabet=alphabet)
    bpe.train_from_iterator([*text.splitlines(), " ".join(alphabet)], trainer)  # each character ending a word, too
    trained = json.loads(bpe.to_str())["model"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(trained["vocab"]), encoding="utf-8")
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in trained["merges"]]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return OpenAIGPTTokenizerFast(vocab_file=str(out_dir / "vocab.json"), merges_file=str(out_dir / "merges.txt"))


def make_random_gpt1(
    out_dir: str | Path,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    n_positions: int = 512,
    seed: int = 0,
    initializer_range: float = 0.2,
    perturb: float = 0.1,
    **options: object,
) -> Path:
    """Save a random OpenAIGPTLMHeadModel (GPT-1) of this shape, with the kept GPT-1-format BPE
    (gpt1_tokenizer), to `out_dir`. initializer_range and perturb as for GPT-2;
    `options`: more OpenAIGPTConfig settings (afn, ...)."""
    import torch
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    out = Path(out_dir)
    tokenizer = gpt1_tokenizer()
    torch.manual_seed(seed)
    settings = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions, initializer_range=initializer_range, vocab_size=len(tokenizer))
    model = OpenAIGPTLMHeadModel(OpenAIGPTConfig(**(settings | options))).eval()
    _perturb(model, perturb)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _perturb(model, perturb: float) -> None:
    """N(0, perturb) noise on every bias and LayerNorm parameter (see make_random_gpt2)."""
    import torch

    if perturb:
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.ndim == 1:
                    parameter.add_(torch.randn_like(parameter) * perturb)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-positions", type=int, default=None, help="default: 1024 for GPT-2, 512 for GPT-1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpt2-small", action="store_true", help="the real gpt2 (124M) shape")
    parser.add_argument("--gpt1", action="store_true", help="a GPT-1 (openai-gpt) with a small GPT-1-format BPE")
    parser.add_argument("--classifier", metavar="LABELS", help="a GPT2ForSequenceClassification with these comma-separated labels")
    args = parser.parse_args(argv)
    shape = GPT2_SMALL if args.gpt2_small else {k: getattr(args, k) for k in GPT2_SMALL if getattr(args, k) is not None}
    if args.gpt1:
        print(make_random_gpt1(args.out_dir, seed=args.seed, **shape))
        return
    if args.classifier:
        print(make_random_gpt2_classifier(args.out_dir, tuple(args.classifier.split(",")), seed=args.seed, **shape))
        return
    print(make_random_gpt2(args.out_dir, seed=args.seed, **shape))


if __name__ == "__main__":
    main()
