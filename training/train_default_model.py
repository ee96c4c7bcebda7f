"""Train gpt2onnx's shipped default model: a small GPT-2 on Debian's fortune cookies.

    .venv/bin/python training/train_default_model.py            # train, export, ship
    .venv/bin/python training/train_default_model.py --steps 20 --no-ship   # a quick look

Seeded and deterministic (fixed thread count, deterministic torch kernels, a
fixed number of steps), so a re-run on the same kind of machine reproduces the
held-out perplexity. Steps:
1. fetch and split the corpus (corpus.py);
2. tokenize with GPT-2's own tokenizer, so the model is a drop-in GPT-2;
3. train a GPT2LMHeadModel on packed windows, documents separated by <|endoftext|>;
4. export it with `gpt2onnx export` (optionally int8), measure the held-out
   perplexity of the exported model with gpt2onnx's runtime against a unigram
   baseline, and ship it to runtime/default_model/ with training.json, plus the
   held-out text and unigram counts the tests re-check it with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import corpus

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "runtime" / "default_model"
EVAL_DATA = REPO / "tests" / "data" / "default_model"
EOT = "<|endoftext|>"


@dataclass(frozen=True)
class TrainConfig:
    """Model shape and optimisation settings (GPT-2's names for the shape)."""

    n_layer: int = 6  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 96  # hidden size: the fp32 export must stay under 30 MB
    n_positions: int = 256  # context: also the training window
    dropout: float = 0.1  # resid, embd and attn dropout: the corpus is small
    batch_size: int = 16  # windows per step
    steps: int = 800  # optimiser steps (fixed, not timed, so re-runs agree): ~45 minutes here
    lr: float = 2e-3  # peak learning rate
    warmup: int = 80  # linear warmup steps, then cosine decay to lr / 10
    weight_decay: float = 0.1  # on matrices only
    seed: int = 1234  # torch and numpy seed
    threads: int = 2  # torch intra-op threads: fixed so the float sums are too


def heldout_texts(docs: list[str]) -> list[str]:
    """Each held-out cookie framed as in training: after a separator, ending with one."""
    return [f"{EOT}{doc}{EOT}" for doc in docs]


def unigram_counts(train_ids: list[list[int]]) -> dict[int, int]:
    """Token counts of the training split, separators included (one per document)."""
    flat = np.concatenate([np.asarray(ids + [EOT_ID], dtype=np.int64) for ids in train_ids])  # [train tokens]
    values, counts = np.unique(flat, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def unigram_perplexity(counts: dict[int, int], vocab_size: int, target_ids: list[list[int]]) -> float:
    """Add-one-smoothed unigram perplexity of the tokens the model predicts (all but each text's first)."""
    total = sum(counts.values()) + vocab_size
    targets = np.concatenate([np.asarray(ids[1:]) for ids in target_ids])  # [tokens]
    logp = np.log(np.asarray([counts.get(int(t), 0) + 1 for t in targets], dtype=np.float64) / total)
    return float(math.exp(-logp.mean()))


def batches(stream: np.ndarray, cfg: TrainConfig, rng: np.random.Generator):
    """Endless [batch, n_positions + 1] windows at random offsets of the packed training stream."""
    import torch

    span = cfg.n_positions + 1
    while True:
        starts = rng.integers(0, len(stream) - span, size=cfg.batch_size)
        yield torch.from_numpy(np.stack([stream[s : s + span] for s in starts]))  # [batch, n_positions + 1]


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def torch_heldout_nll(model, heldout_ids: list[list[int]], n_positions: int) -> float:
    """Mean NLL per predicted token over held-out texts (cut at n_positions), for progress logs."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in heldout_ids:
            x = torch.tensor([ids[:n_positions]])  # [1, seq]
            loss = model(x, labels=x).loss
            total += float(loss) * (x.shape[1] - 1)
            count += x.shape[1] - 1
    model.train()
    return total / count


def train(cfg: TrainConfig, train_ids: list[list[int]], heldout_ids: list[list[int]], log) -> tuple[object, dict]:
    """Train a GPT2LMHeadModel; return it and the training record."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)

    # Documents in a seeded order, each followed by the separator, packed into one stream.
    order = rng.permutation(len(train_ids))
    stream = np.concatenate([np.asarray(train_ids[i] + [EOT_ID], dtype=np.int64) for i in order])  # [train tokens]

    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=EOT_ID,
        eos_token_id=EOT_ID,
    )
    model = GPT2LMHeadModel(config)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params / 1e6:.2f} M parameters; corpus: {len(stream)} training tokens")

    started = time.perf_counter()
    history = []
    for step, batch in zip(range(cfg.steps), batches(stream, cfg, rng)):
        for group in optim.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = _loss(model, batch)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            elapsed = time.perf_counter() - started
            entry = {"step": step, "train_loss": round(loss.item(), 4), "minutes": round(elapsed / 60, 2)}
            if (step % 400 == 0 and step) or step == cfg.steps - 1:
                entry["heldout_nll"] = round(torch_heldout_nll(model, heldout_ids, cfg.n_positions), 4)
            history.append(entry)
            log(json.dumps(entry))
    model.eval()
    seconds = time.perf_counter() - started
    record = {
        "parameters": params,
        "training_tokens": int(len(stream)),
        "tokens_seen": cfg.steps * cfg.batch_size * cfg.n_positions,
        "epochs": round(cfg.steps * cfg.batch_size * cfg.n_positions / len(stream), 2),
        "training_seconds": round(seconds, 1),
        "history": history,
    }
    return model, record


def _loss(model, batch):
    """Next-token cross-entropy on one [batch, n_positions + 1] window batch."""
    import torch

    logits = model(batch[:, :-1]).logits  # [batch, n_positions, vocab]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


# The shipped model's generation defaults (its generation_config.json, as Hugging Face
# models ship theirs). Greedy search on a small model trained on fortune cookies
# settles on the corpus's most common line (a "-- Larry Wall" attribution); sampling
# writes cookies. `--no-do-sample` or do_sample=False still gives greedy search.
GENERATION_DEFAULTS = {"do_sample": True, "temperature": 0.8, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.1}


def save_checkpoint(model, tokenizer, out: Path) -> Path:
    """A normal save_pretrained folder: what `gpt2onnx export` takes."""
    from transformers import GenerationConfig

    shutil.rmtree(out, ignore_errors=True)
    model.generation_config = GenerationConfig(bos_token_id=EOT_ID, eos_token_id=EOT_ID, **GENERATION_DEFAULTS)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def export(checkpoint: Path, out: Path, log) -> dict:
    """`gpt2onnx export CHECKPOINT OUT`: the shipped model is a normal export folder."""
    command = [sys.executable, "-m", "gpt2onnx.cli", "export", str(checkpoint), str(out), "--force", "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: gpt2onnx export failed: {done.stderr.strip()}")
    report = json.loads(done.stdout)
    log(f"exported: {report['total_bytes'] / 1e6:.1f} MB, max |logit diff| {report['validation']['max_abs_diff']:.2g}")
    return report


def evaluate_export(folder: Path, heldout_docs: list[str], counts: dict[int, int]) -> dict:
    """Held-out perplexity of the exported model, run by gpt2onnx's runtime, and the unigram baseline."""
    from gpt2onnx.runtime import load

    model = load(folder, provider="cpu")
    texts = heldout_texts(heldout_docs)
    scores = model.score(texts)
    tokens = sum(s.token_count for s in scores)
    nll = -sum(s.logprob for s in scores)
    ids = [model.tokenizer.encode(t) for t in texts]
    return {
        "heldout_documents": len(texts),
        "heldout_tokens": tokens,
        "heldout_perplexity": round(math.exp(nll / tokens), 4),
        "heldout_bits_per_byte": round(nll / math.log(2) / sum(len(d.encode("utf-8")) for d in heldout_docs), 4),
        "unigram_perplexity": round(unigram_perplexity(counts, model.info.vocab_size, ids), 4),
    }


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "default-model", help="scratch folder")
    parser.add_argument("--no-ship", action="store_true", help="train and evaluate, but leave runtime/default_model alone")
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sys.path.insert(0, str(REPO))
    from gpt2onnx.export.random_model import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    global EOT_ID, VOCAB_SIZE
    EOT_ID, VOCAB_SIZE = tokenizer.eos_token_id, len(tokenizer)

    data = corpus.load(args.work / "corpus")
    train_ids = tokenizer(data.train)["input_ids"]
    heldout_ids = tokenizer(heldout_texts(data.heldout))["input_ids"]
    log(f"corpus: {len(data.train)} training and {len(data.heldout)} held-out cookies")

    model, record = train(cfg, train_ids, heldout_ids, log)
    checkpoint = save_checkpoint(model, tokenizer, args.work / "checkpoint")
    exported = args.work / "onnx"
    report = export(checkpoint, exported, log)
    counts = unigram_counts(train_ids)
    evaluation = evaluate_export(exported, data.heldout, counts)
    log(json.dumps(evaluation))

    provenance = {
        "what": "gpt2onnx's default model: a small GPT-2 trained from scratch on Debian's fortune cookies",
        "corpus": {
            "packages": data.sources,
            "licence": corpus.LICENCE,
            "training_documents": len(data.train),
            "heldout_documents": len(data.heldout),
            "split": f"sha256(text) % {corpus.HELDOUT_EVERY} == 0 is held out",
        },
        "tokenizer": "GPT-2's own byte-level BPE (50257 tokens)",
        "config": asdict(cfg),
        "training": record,
        "evaluation": evaluation,
        "export": {"total_bytes": report["total_bytes"], "max_abs_diff": report["validation"]["max_abs_diff"]},
        "machine": f"{os.cpu_count()} CPU cores, torch {__import__('torch').__version__}",
    }
    (exported / "training.json").write_text(json.dumps(provenance, indent=2) + "\n")
    if args.no_ship:
        log(f"not shipped; the export is in {exported}")
        return 0
    shutil.rmtree(SHIPPED, ignore_errors=True)
    shutil.copytree(exported, SHIPPED)
    EVAL_DATA.mkdir(parents=True, exist_ok=True)
    (EVAL_DATA / "heldout.txt").write_text("\n%\n".join(data.heldout) + "\n", encoding="utf-8")
    (EVAL_DATA / "unigram.json").write_text(json.dumps({"vocab_size": VOCAB_SIZE, "counts": counts}) + "\n")
    log(f"shipped to {SHIPPED.relative_to(REPO)}; evaluation data in {EVAL_DATA.relative_to(REPO)}")
    return 0


EOT_ID = 50256
VOCAB_SIZE = 50257

if __name__ == "__main__":
    sys.exit(main())
