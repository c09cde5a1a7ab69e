"""The two classification probes on features of known separability (docs/probes.md).

    python docs/diagnostics/probe_bayes.py

Six Gaussian classes in 32 dimensions (unit covariance, class means at distance 3 from the origin in random
directions; the same draw as tests/test_probing.py's converged-probe test for seed 0), 1,000 validation and
20,000 test points. Prints, per data seed and label count: the Bayes classifier's test accuracy (nearest true
mean), the converged probe's (textvae.probing.classifiers.converged_probe) and the SPEC recipe's
(train_linear: SGD lr 1.0, batch 16, 10 logits); then the same with the features scaled by 10 and shifted by 5
(a change of units that the converged probe's standardisation undoes and the SPEC recipe's fixed lr does not).
"""
from __future__ import annotations

import numpy as np

from textvae.probing.classifiers import converged_probe, train_linear


def draw(rng, means, n):
    y = rng.integers(0, len(means), n)
    return means[y] + rng.normal(size=(n, means.shape[1])), y


def main() -> None:
    print("seed labels scale | Bayes converged SPEC")
    for seed in (0, 1, 2):
        for labels in (500, 4000):
            rng = np.random.default_rng(seed)
            means = rng.normal(size=(6, 32))
            means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
            (tx, ty), (vx, vy), (sx, sy) = draw(rng, means, labels), draw(rng, means, 1000), draw(rng, means, 20000)
            bayes = 100 * np.mean(((sx[:, None] - means[None]) ** 2).sum(-1).argmin(1) == sy)
            for scale, shift in ((1.0, 0.0), (10.0, 5.0)):
                f = lambda a: a * scale + shift  # noqa: E731
                conv = converged_probe(f(tx), ty, f(vx), vy, f(sx), sy)["test_accuracy"]
                spec = train_linear(f(tx), ty, f(vx), vy, f(sx), sy, n_logits=10)["test_accuracy"]
                print(f"{seed} {labels:5d} x{scale:<4g} | {bayes:.2f} {conv:.2f} {spec:.2f}")


if __name__ == "__main__":
    main()
