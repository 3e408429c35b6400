"""Train a GAN, VAE, DDPM or flow-matching model; run it with `accelerate launch`:

    accelerate launch train/train.py --method flow-matching --dataset digits --output_dir runs/fm-digits --seed 0

Every option is documented by `python train/train.py --help` and in docs/training.md. A `--config recipe.yaml`
can hold any of them; the command line overrides the recipe.
"""

import sys

from genzoo.training import main

if __name__ == "__main__":
    sys.exit(main())
