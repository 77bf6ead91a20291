"""The tutorial's CNN for medical images, fixed and run through medjax.

    python experiments/tutorial/cnn.py      # ~10 s on a 2-core CPU; the loss falls from ~2.3 to ~0.0

Images are 1×28×28 noise with a brighter 5×5 "lesion" whose position (one of 10) is the class, so the task is learnable.
The tutorial fed 1×32×32 images to a head sized for 28×28; medjax's `TutorialCNN` sizes its head at init, so
``--size 32`` works too.
"""

import argparse

import numpy as np

from medjax.nn.conv import TutorialCNN
from medjax.tutorial import run


def lesion_images(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """f32[n, size, size, 1] noise with a +1.5 5×5 square at one of 10 places (2 rows × 5 columns); the place is the
    label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    images = rng.normal(size=(n, size, size, 1)).astype(np.float32)
    corners = [(r, 1 + k * (size - 6) // 4) for r in (3, size - 8) for k in range(5)]
    for i, label in enumerate(labels):
        r, c = corners[label]
        images[i, r:r + 5, c:c + 5] += 1.5
    return {"x": images, "label": labels.astype(np.int32)}


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=28, help="image height and width (default: 28)")
    parser.add_argument("--examples", type=int, default=1024, help="random images to train on (default: 1024)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default: 10, as in the tutorial)")
    args = parser.parse_args(argv)
    return run(TutorialCNN(num_classes=10), lesion_images(args.examples, args.size, seed=0), epochs=args.epochs)


if __name__ == "__main__":
    main()
