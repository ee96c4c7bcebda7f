"""Speed benchmark (issue 6): gpt2onnx against Optimum and transformers, in one run, on this machine.

    .venv/bin/python benchmarks/speed.py [--repeats 3] [--threads T] [--out docs/speed] [--work DIR] [--quick]
    .venv/bin/python -m benchmarks [same flags]        # from the repository root

All contenders run the same random weights in the real gpt2 (124M) shape
(make_random_gpt2(seed=0, **GPT2_SMALL)), greedy unless stated, on the CPU with
T threads (default: every core):

- gpt2onnx-fp32: `gpt2onnx export` of the checkpoint, run by gpt2onnx.runtime
  (load(folder, provider="cpu", threads=T)) through the path users run:
  `model.run(...)` and its Run's `deltas()` (search, detokenizer, stop strings);
- gpt2onnx-int8: `gpt2onnx export --int8` (export_model(..., plan=GraphPlan(weights="int8"))),
  run the same way;
- gpt2onnx-int4: `gpt2onnx export --int4` (MatMulNBits, 4 bits in blocks of 32), run the same way;
- gpt2onnx-int8-kv8, gpt2onnx-int4-kv8: the same with `--kv-cache-dtype int8` (an int8 KV cache);
- llama.cpp-f32, -f16, -q8_0, -q4_0: llama.cpp's own llama-bench on GGUFs of the checkpoint
  (contenders/llama_cpp.py; left out with the reason where it can't be built);
- optimum: Optimum's plain export (main_export, task text-generation-with-past)
  run by ORTModelForCausalLM.generate, intra_op_num_threads=T;
- transformers: GPT2LMHeadModel.generate (PyTorch, use_cache, inference_mode,
  torch.set_num_threads(T)).

Each (contender, repeat) runs in its own process (speed.py --contender NAME,
printing one JSON line), so imports never mix (the gpt2onnx processes never
import torch) and memory is per contender. Repeats are interleaved, in a
rotating order, so a noisy neighbour spreads over everyone. Every process
warms up with one short generation before it measures. The metrics, their
definitions and the targets are in speed.md's Method section (report.py).
Generation is forced to full length (min_new_tokens = max_new_tokens) so that
an eos never shortens anyone's run, and fp32 must make the same token ids as
transformers (the report says whether it did).

Writes into --out: speed.md (ratios ours / peer with medians and min-max over
repeats, absolute figures, machine, targets), speed.json (every raw figure)
and decode_vs_context.png (needs matplotlib: pip install '.[bench]'; optional
with --quick). --quick: a tiny model, 1 repeat and few tokens, for the CI
smoke test (tests/test_bench.py); its default --out is a new temporary folder.

Modules, in the order a run uses them:

- speed.py, __main__.py: entry points; cli.py: flags, the parent's run, the
  contender-process mode;
- plan.py: the plan (sizes, repeats), the metrics, the ratio pairs;
- contenders/: one class per runtime under test, REGISTRY in its __init__;
- models.py: the checkpoint and each contender's build of it, cached in --work;
- machine.py: CPU, versions, memory-bandwidth probe, CPU-time accounting;
- runner.py: one process per (contender, repeat); workload.py: what that
  process measures;
- stats.py: medians, ratios, targets, int8 agreement, same tokens;
- report.py, plot.py: speed.md / speed.json / the console, and the plot.

A contender (contenders/base.py) is a Contender subclass in its own file,
listed in contenders/__init__.py's REGISTRY:

    class LlamaCpp(Contender):
        name, label = "llama.cpp", "llama.cpp (llama-cpp-python)"

        @classmethod
        def build(cls, checkpoint, folder): ...   # parent: convert the checkpoint into folder (cached)
        @classmethod
        def weights(cls, folder): ...             # parent, optional: bytes read per token, or None

        def imports(self): ...                    # child: import its packages, set threads (timed)
        def load(self): ...                       # child: load self.folder with self.threads (timed)
        def generate(self, rows, new_tokens, beams=1) -> Trace: ...
        def extra(self, plan, figures, side): ... # child, optional: figures of its own

generate() runs greedy search (beam search for beams > 1) from rows of token
ids, forced to exactly new_tokens, and returns a Trace: the call's start and
end, the time each step's tokens reached the caller, and the new ids.
"""
