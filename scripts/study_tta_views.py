#!/usr/bin/env python3
"""Test accuracy of a saved model under other sets of test-time views than ``--tta``'s.

Scores every image of the test split once per view (shifts of up to 2 pixels in each direction,
reflect-padded as :mod:`cifarkit.evaluation.tta` pads them, each with and without its mirror:
50 views), then prints the accuracy of each combination, averaging the probabilities (as
``--tta`` does) and their logarithms (as averaging logits would choose). The first rows are the
centre view and ``--tta flip`` / ``--tta flip,translate``, so the table checks itself against
``cifarkit evaluate``.

    python scripts/study_tta_views.py RUN/last.keras cifar-10-python.tar.gz [--no-verify] [--limit N]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

REACH = 2  # pixels each way
CHUNK = 1000


def position_weights(positions: dict[tuple[int, int], float]) -> dict[tuple[int, int, bool], float]:
    """Each (dy, dx) position's weight shared by the view and its mirror."""
    return {(dy, dx, flip): weight / 2 for (dy, dx), weight in positions.items() for flip in (False, True)}


def neighbours(reach: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1) if (dy, dx) != (0, 0)]


COMBINATIONS = {
    "centre view": {(0, 0, False): 1.0},
    "flip (--tta flip)": position_weights({(0, 0): 1.0}),
    "flip,translate (--tta, airbench's)": position_weights({(0, 0): 0.5, (1, 1): 0.25, (-1, -1): 0.25}),
    "the same, equal weights": position_weights({(0, 0): 1 / 3, (1, 1): 1 / 3, (-1, -1): 1 / 3}),
    "4 diagonal 1-pixel shifts": position_weights({(0, 0): 0.5, **{(a, b): 0.125 for a in (-1, 1) for b in (-1, 1)}}),
    "8 1-pixel shifts": position_weights({(0, 0): 0.5, **dict.fromkeys(neighbours(1), 0.5 / 8)}),
    "3x3 shifts, equal": position_weights(dict.fromkeys([(0, 0), *neighbours(1)], 1 / 9)),
    "5x5 shifts, equal": position_weights(dict.fromkeys([(0, 0), *neighbours(2)], 1 / 25)),
    "diagonal 1 and 2 pixels": position_weights(
        {(0, 0): 0.4, (1, 1): 0.15, (-1, -1): 0.15, (2, 2): 0.15, (-2, -2): 0.15}
    ),
}


def score_views(model_path: Path, data: Path, verify: bool, limit: int | None) -> tuple[np.ndarray, dict]:
    from cifarkit.data import open_data
    from cifarkit.evaluation.evaluate import eval_batches, scorer
    from cifarkit.evaluation.tta import shift
    from cifarkit.modelio.keras_file import load_model

    source = open_data(data, verify=verify)
    _, infer = scorer(load_model(model_path))
    images, labels = [], []
    for batch, batch_labels in eval_batches(source, "test", batch_size=CHUNK, image_size=None):
        images.append(np.asarray(batch))
        labels.append(np.asarray(batch_labels))
    images, labels = np.concatenate(images)[:limit], np.concatenate(labels)[:limit]
    scores = {}
    for dy, dx in itertools.product(range(-REACH, REACH + 1), repeat=2):
        shifted = images if (dy, dx) == (0, 0) else shift(images, dy, dx, pixels=REACH)
        for flip in (False, True):
            view = np.ascontiguousarray(shifted[:, :, ::-1] if flip else shifted)
            scores[(dy, dx, flip)] = np.concatenate([infer(view[i : i + CHUNK]) for i in range(0, len(view), CHUNK)])
    return labels, scores


def accuracy(labels: np.ndarray, scores: dict, weights: dict, log: bool) -> float:
    total = sum(weight * (np.log(scores[view] + 1e-12) if log else scores[view]) for view, weight in weights.items())
    return float(np.mean(total.argmax(axis=1) == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .keras model cifarkit saved (a run's last.keras)")
    parser.add_argument("data", type=Path, help="the dataset whose test split to score")
    parser.add_argument("--no-verify", action="store_true", help="skip the archive's checksum")
    parser.add_argument("--limit", type=int, help="the first N test images only (a quick check)")
    args = parser.parse_args()
    labels, scores = score_views(args.model, args.data, verify=not args.no_verify, limit=args.limit)
    print(f"{'views':<38} {'count':>5} {'probabilities':>14} {'log-probabilities':>18}")
    for name, weights in COMBINATIONS.items():
        plain, logs = accuracy(labels, scores, weights, False), accuracy(labels, scores, weights, True)
        print(f"{name:<38} {len(weights):>5} {plain:>14.2%} {logs:>18.2%}")


if __name__ == "__main__":
    main()
