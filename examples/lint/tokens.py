"""Build a vocabulary and encode a synthetic corpus.

Planted: a quadratic membership test (``tok not in vocab`` on a growing list) that
dominates the run, plus two slow patterns in code too cold to matter (a ``str +=``
loop over 50 words and ``sorted(...)[-1]`` called once). ``perfpilot lint`` with a
profile ranks the membership test first and demotes the cold two.

Run: ``python examples/lint/tokens.py``
"""

from __future__ import annotations

import random


def corpus(n_tokens: int, vocab_size: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab_size)]
    return [rng.choice(words) for _ in range(n_tokens)]


def build_vocab(tokens: list[str]) -> list[str]:
    vocab = []
    for tok in tokens:
        if tok not in vocab:  # planted: scans the whole list for every token
            vocab.append(tok)
    return vocab


def encode(tokens: list[str], vocab: list[str]) -> list[int]:
    ids = {tok: i for i, tok in enumerate(vocab)}
    return [ids[tok] for tok in tokens]


def summary(vocab: list[str], counts: dict[str, int]) -> str:
    text = ""
    for word in vocab[:50]:
        text += f"{word}={counts[word]} "  # planted, but cold: 50 iterations
    longest = sorted(vocab, key=len)[-1]  # planted, but cold: called once
    return f"{text}\nlongest: {longest}"


def main(n_tokens: int = 40_000, vocab_size: int = 3_000) -> str:
    tokens = corpus(n_tokens, vocab_size)
    vocab = build_vocab(tokens)
    ids = encode(tokens, vocab)
    counts: dict[str, int] = {}
    for tok in tokens:
        counts[tok] = counts.get(tok, 0) + 1
    return f"{len(vocab)} words, {len(ids)} ids\n{summary(vocab, counts)}"


if __name__ == "__main__":
    print(main())
