"""A plain training script whose DataLoader is the bottleneck, written as users write them.

Each sample is a spectrogram computed in ``Dataset.__getitem__``: a 1 s "recording" (a
chirp whose pitch depends on the class, plus noise, generated from the sample's index so
every run sees the same data) goes through a numpy short-time Fourier transform, a mel
filterbank and a log. The DataLoader keeps its defaults (``num_workers=0``: every sample
is computed in the training process, between steps) and torch keeps its default thread
count; a small 2-D CNN classifies the spectrograms. Nothing here is tuned: it is the
input for ``perfpilot tune -- python examples/scripts/loader_bound.py`` and for
``benchmarks/tune_scripts.py``.

    python examples/scripts/loader_bound.py                 # 10 epochs, about a minute
    python examples/scripts/loader_bound.py --steps 20      # stop after 20 steps
"""

import argparse

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

SAMPLE_RATE = 16_000
SECONDS = 1.0
N_FFT = 512
HOP = 192
N_MELS = 64
CLASSES = 10


def mel_filterbank():
    """Triangular filters on the mel scale, shape (N_MELS, N_FFT // 2 + 1)."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(0.0), mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None] - lo) / (mid - lo)
    down = (hi - bins[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


MEL = mel_filterbank()


def spectrogram(wave):
    """Log-mel spectrogram, shape (1, N_MELS, frames), normalized per sample."""
    frames = 1 + (len(wave) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    windowed = wave[idx] * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(windowed, axis=1)) ** 2
    # einsum, not @: a matmul this small would wake every BLAS thread for each sample
    spec = np.log(np.einsum("mf,tf->mt", MEL, power) + 1e-6).astype(np.float32)
    spec = (spec - spec.mean()) / (spec.std() + 1e-6)
    return spec[None]


class ChirpDataset(Dataset):
    """Synthetic recordings: class ``k`` is a chirp starting near ``300 * (k + 1)`` Hz."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        label = i % CLASSES
        t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
        f0 = 300.0 * (label + 1) * rng.uniform(0.95, 1.05)
        sweep = rng.uniform(100.0, 400.0)
        wave = np.sin(2 * np.pi * (f0 * t + 0.5 * sweep * t * t))
        wave += 0.5 * rng.standard_normal(t.shape)
        return torch.from_numpy(spectrogram(wave)), label


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d((8, 1)),  # average over time, keep 8 frequency bands
        )
        self.head = nn.Linear(32 * 8, CLASSES)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(ChirpDataset(args.samples), batch_size=32, shuffle=True)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    for epoch in range(args.epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            step += 1
            if step % args.log_every == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}", flush=True)
            if args.steps and step >= args.steps:
                return
    print(f"done: {step} steps, final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
