"""Planted bottleneck: grad-in-eval (an inference-only script: no optimizer at all).

Batch inference with the model in eval() mode but autograd still on: every forward
records a graph and keeps activations for a backward that never comes.

    perfpilot profile -- python examples/bottlenecks/grad_in_eval.py
"""

import torch
import torch.nn as nn


def make_model():
    layers = []
    for _ in range(16):
        layers += [nn.Linear(64, 64), nn.LayerNorm(64), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(64, 10))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    model = make_model().eval()
    data = torch.randn(12800, 64)
    # planted: no torch.no_grad() / inference_mode() around the forwards
    predictions = [model(batch).argmax(1) for batch in data.split(32)]
    print(f"predicted {len(torch.cat(predictions))} samples")


if __name__ == "__main__":
    main()
