"""Text classification: the onnxruntime session over a GPT2ForSequenceClassification
export (Optimum's `text-classification` graph), classifying token-id lists, and the
one-line refusals when a model is asked for the other task.

The graph takes whole texts, right-padded, and gives one row of label scores per
text, read where transformers reads them: at the text's last token that is not
the pad token. That rule is inside the graph, traced with the export's pad id, so
the runtime pads with the same id (the manifest's pad_token_id). Padding on the
right changes nothing before it (attention is causal, positions start at 0), so a
text gets the same scores alone as in any batch. A text that ends with the pad
token (GPT-2's <|endoftext|>, when it pads with eos) is read at the token before.

numpy, onnxruntime and tokenizers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import contract, providers
from .errors import ModelLoadError, UsageError
from .manifest import ModelInfo
from .session import check_io, inference_session

MAX_BATCH = 16  # texts per session call: a batch is as wide as its longest text


@dataclass(frozen=True)
class Classification:
    """One text's label and the probability of every label."""

    text: str
    label: str  # the most likely label's name
    probabilities: dict[str, float]  # label name -> softmax probability, in label-id order
    logits: tuple[float, ...]  # the graph's scores, by label id


def check_task(folder: Path, info: ModelInfo, task: str) -> None:
    """Refuse (UsageError, one line) a call for `task` on a model exported for the other task."""
    if info.task == task:
        return
    if info.task == contract.TEXT_CLASSIFICATION:
        raise UsageError(
            f"{folder} is a text-classification model ({info.architecture}): use classify() ('gpt2onnx classify'), "
            f"or export a {contract.GPT2_LM} to generate"
        )
    raise UsageError(
        f"{folder} is a text-generation model ({info.architecture}): classify needs a {contract.GPT2_CLASSIFIER} export "
        "(make one with 'gpt2onnx export')"
    )


class ClassifierSession:
    """An onnxruntime session over a classifier's model.onnx, checked against contract.classifier_signature."""

    def __init__(self, model_path: Path, info: ModelInfo, provider: str = "auto", threads: int | None = None):
        if not info.labels or info.pad_token_id is None:  # the manifest reader insists on labels; pad_token_id is optional there
            raise ModelLoadError(f"{model_path.parent} has a classifier without label names or pad_token_id in its manifest: re-export the model")
        self.info = info
        self.labels = info.labels
        self.pad_token_id = info.pad_token_id
        plan = providers.plan(provider)
        self._session = inference_session(model_path, plan, threads)
        # settle's fallback warning (stacklevel 3) points at whoever built this session: call it here.
        self.provider, self.provider_note = providers.settle(plan, self._session.get_providers())
        check_io(self._session, contract.classifier_signature(info.dtype), f"a {contract.GPT2_CLASSIFIER} graph")
        width = self._session.get_outputs()[0].shape[-1]  # Optimum's graph: num_labels as a number
        if isinstance(width, int) and width != len(self.labels):
            raise ModelLoadError(
                f"{model_path} scores {width} labels but its manifest names {len(self.labels)}: re-export the model"
            )

    def forward(
        self,
        input_ids: np.ndarray,  # int64 [batch, seq]
        attention_mask: np.ndarray,  # int64 [batch, seq]
    ) -> np.ndarray:
        """Label scores: float32 [batch, num_labels]."""
        feeds = {contract.INPUT_IDS: input_ids, contract.ATTENTION_MASK: attention_mask}
        return self._session.run([contract.LOGITS], feeds)[0]


def check_texts(texts: list[str], ids_list: list[list[int]], n_positions: int) -> None:
    """Every text has tokens and fits the context; a bad one is named in the one-line error."""
    for i, (text, ids) in enumerate(zip(texts, ids_list)):
        what = f"text {i} ({text[:30]!r})"
        if not ids:
            raise UsageError(f"{what} has no tokens: classify needs at least one token per text")
        if len(ids) > n_positions:
            raise UsageError(f"{what} is {len(ids)} tokens but the model's context (n_positions) is {n_positions}: shorten it")


def pad_right(ids_list: list[list[int]], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both int64 [batch, longest]: each row's tokens, then pad_token_id;
    the mask is 1 on real tokens and 0 on the padding."""
    width = max(map(len, ids_list))
    input_ids = np.full((len(ids_list), width), pad_token_id, np.int64)  # [batch, width]
    attention_mask = np.zeros((len(ids_list), width), np.int64)  # [batch, width]
    for row, ids in enumerate(ids_list):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def label_logits(session: ClassifierSession, ids_list: list[list[int]], batch_size: int = MAX_BATCH) -> np.ndarray:
    """The graph's scores for each token list, float32 [len(ids_list), num_labels], run batch_size lists at a time."""
    parts = [session.forward(*pad_right(ids_list[a : a + batch_size], session.pad_token_id)) for a in range(0, len(ids_list), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(session.labels)), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities float64 [n, num_labels] from scores [n, num_labels]; the row max is subtracted so exp() can't overflow."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)  # [n, num_labels]
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classify(session: ClassifierSession, texts: list[str], ids_list: list[list[int]]) -> list[Classification]:
    """Classify each text from its token ids (ids_list[i] is texts[i] tokenized)."""
    check_texts(texts, ids_list, session.info.n_positions)
    logits = label_logits(session, ids_list)  # [n, num_labels]
    probabilities = softmax(logits)  # [n, num_labels]
    labels = session.labels
    return [
        Classification(text, labels[int(row.argmax())], dict(zip(labels, p.tolist())), tuple(row.tolist()))
        for text, row, p in zip(texts, logits, probabilities)
    ]
