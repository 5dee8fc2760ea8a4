"""Built-in workload ``charlm``: a tiny GPT over the bytes of Python's standard library.

The text is read at run time from this interpreter's own standard library (the directory of
the ``os`` module): its top-level ``*.py`` files in sorted order, concatenated up to
:data:`TEXT_BYTES`. No download; deterministic for a given Python version (other versions
ship other sources, so absolute losses differ slightly between them). The model is
byte-level (vocabulary 256). The last :data:`VAL_BYTES` bytes are held out for validation.

Train samples are windows starting at every byte offset (``len`` ~ 1M), validation samples
are non-overlapping windows. A sample is ``(input[BLOCK] int64, next_bytes[BLOCK] int64)``.
The metric is validation cross-entropy in nats per byte (``val_loss``, lower is better).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from perfpilot.errors import WorkloadError
from perfpilot.plan import Plan
from perfpilot.workload import Workload

TEXT_BYTES = 1_200_000
VAL_BYTES = 65_536
BLOCK = 64
VOCAB = 256
N_LAYER, N_HEAD, N_EMBD = 2, 4, 128


def stdlib_dir() -> Path:
    """The standard library directory of the running interpreter (where ``os.py`` lives)."""
    return Path(os.path.dirname(os.__file__))


@lru_cache(maxsize=1)
def corpus() -> torch.Tensor:
    """The first :data:`TEXT_BYTES` bytes of the sorted top-level stdlib sources, as uint8."""
    root = stdlib_dir()
    chunks: list[bytes] = []
    size = 0
    for path in sorted(root.glob("*.py")):
        chunks.append(path.read_bytes())
        size += len(chunks[-1])
        if size >= TEXT_BYTES:
            break
    if size < 4 * VAL_BYTES:
        raise WorkloadError(
            f"workload 'charlm': found only {size} bytes of Python sources in {root}; "
            f"it needs at least {4 * VAL_BYTES}"
        )
    data = b"".join(chunks)[:TEXT_BYTES]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


class ByteWindows(Dataset):
    """Fixed-length windows of a byte tensor: item ``i`` starts at offset ``i * stride``."""

    def __init__(self, data: torch.Tensor, block: int, stride: int) -> None:
        if len(data) <= block:
            raise ValueError(f"{len(data)} bytes are too few for windows of {block}")
        self.data, self.block, self.stride = data, block, stride

    def __len__(self) -> int:
        return (len(self.data) - self.block - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        chunk = self.data[i * self.stride : i * self.stride + self.block + 1].long()
        return chunk[:-1], chunk[1:]


def train_data() -> ByteWindows:
    return ByteWindows(corpus()[:-VAL_BYTES], BLOCK, stride=1)


def val_data() -> ByteWindows:
    return ByteWindows(corpus()[-VAL_BYTES:], BLOCK, stride=BLOCK)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x GELU MLP."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Byte-level GPT: token + position embeddings, ``n_layer`` blocks, tied output head."""

    def __init__(
        self, vocab: int = VOCAB, block: int = BLOCK, n_layer: int = N_LAYER,
        n_head: int = N_HEAD, n_embd: int = N_EMBD,
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, n_embd)
        self.pos = nn.Embedding(block, n_embd)
        self.blocks = nn.Sequential(*(Block(n_embd, n_head) for _ in range(n_layer)))
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied: fewer parameters, faster start
        self.apply(_init)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.blocks(self.tok(idx) + self.pos(pos))
        return self.head(self.ln(x))


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def model() -> nn.Module:
    return TinyGPT()


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean next-byte cross-entropy (nats)."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def val_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    return lm_loss(model, batch).item()


def adamw(params, lr: float) -> torch.optim.Optimizer:  # noqa: ANN001 - any param iterable
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


# The baseline reaches it after ~1000 steps (seed 0): about a minute on 2 idle CPU cores;
# see docs/workloads.md for measured times.
TARGET_VAL_LOSS = 1.7


def workload() -> Workload:
    return Workload(
        name="charlm",
        model=model,
        train_data=train_data,
        val_data=val_data,
        loss=lm_loss,
        optimizer=adamw,
        metric=val_loss,
        metric_name="val_loss",
        direction="min",
        target=TARGET_VAL_LOSS,
        baseline=Plan(batch_size=32, lr=1e-3),
        description=(
            f"byte-level tiny GPT ({N_LAYER} layers, {N_EMBD} wide, context {BLOCK}) on "
            f"{TEXT_BYTES // 1000} kB of the stdlib's sources; target val_loss "
            f"{TARGET_VAL_LOSS} nats/byte (uniform is {math.log(VOCAB):.2f})"
        ),
    )
