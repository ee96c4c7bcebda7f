"""Random-init GPT-2 checkpoints with GPT-2's real tokenizer, for tests, demos and benchmarks.

Random weights make timings real and parity tests exact without downloading
anything. `python -m gpt2onnx.export.random_model DIR --n-layer 2 ...` writes one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TOKENIZER_DIR = Path(__file__).parent / "assets" / "gpt2-tokenizer"  # GPT-2's vocab.json + merges.txt (MIT)

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
) -> Path:
    """Save a random GPT2LMHeadModel of this shape, with GPT-2's tokenizer, to `out_dir`.

    GPT-2's initializer_range (0.02) gives nearly uniform next-token distributions;
    a larger one (0.5) gives peaked ones, as a trained model has. A fresh model's
    biases are 0 and its LayerNorms the identity, so a graph that dropped one would
    still match: `perturb` adds N(0, perturb) noise to every bias and LayerNorm
    parameter, as training does.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = gpt2_tokenizer()
    config = GPT2Config(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_positions=n_positions,
        initializer_range=initializer_range,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    if perturb:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.ndim == 1:  # biases and LayerNorm weights/biases
                    parameter.add_(torch.randn_like(parameter) * perturb)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-positions", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpt2-small", action="store_true", help="the real gpt2 (124M) shape")
    args = parser.parse_args(argv)
    shape = GPT2_SMALL if args.gpt2_small else {k: getattr(args, k) for k in GPT2_SMALL}
    print(make_random_gpt2(args.out_dir, seed=args.seed, **shape))


if __name__ == "__main__":
    main()
