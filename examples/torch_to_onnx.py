"""Train a small PyTorch CNN with dropout on scikit-learn's 8x8 digits and export it to ONNX, with its Dropout kept.

    python examples/torch_to_onnx.py net.onnx       # also writes net-digits.npy: 16 held-out digits, NHWC
    dropcore import net.onnx net.dropcore
    dropcore predict net.dropcore net-digits.npy --mc-samples 20 --seed 0

Needs torch, onnx, onnxscript (torch's exporter uses it) and scikit-learn (``pip install
"dropcore[torch,onnx,digits]" onnxscript``). PyTorch leaves Dropout out of an exported graph in eval mode;
exporting with the Dropout modules in training mode keeps them, so dropcore can run Monte-Carlo dropout on the
imported model (where they are the identity, as in eval mode, unless ``mc_samples`` asks for dropout). The inputs dropcore takes are channels
last: ``net-digits.npy`` holds the NCHW test digits transposed to NHWC.
"""
import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def build():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the ONNX file to write")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)  # NCHW in [0, 1]
    y = torch.tensor(digits.target)
    x_train, y_train, x_test = x[:-16], y[:-16], x[-16:]
    net = build()
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(args.epochs):
        for i in torch.randperm(len(x_train)).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x_train[i]), y_train[i]).backward()
            optimizer.step()
    net.eval()
    for module in net:
        if isinstance(module, nn.Dropout):
            module.train()  # kept in the graph: dropcore's Monte-Carlo dropout needs it
    served = nn.Sequential(net, nn.Softmax(dim=1))  # trained on logits, served as probabilities
    program = torch.onnx.export(served, (x_test[:2],), dynamo=True, input_names=["x"], output_names=["probs"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save(args.output)
    samples = args.output.rsplit(".", 1)[0] + "-digits.npy"
    np.save(samples, x_test.numpy().transpose(0, 2, 3, 1))
    print(f"Wrote {args.output} and {samples} (labels {digits.target[-16:].tolist()})")


if __name__ == "__main__":
    main()
