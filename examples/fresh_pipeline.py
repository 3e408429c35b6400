"""Build an untrained genzoo pipeline and save it, to try sampling, saving and loading before training anything.

    python examples/fresh_pipeline.py flow-matching runs/fresh --data image
    genzoo sample runs/fresh --num-samples 16 --steps 20 --seed 0 --out samples.png

The samples are noise until the models are trained; the point is the machinery: the folder is exactly what a
trained model's folder looks like, and loads with genzoo or plain Diffusers.
"""

import argparse

import diffusers
import torch

import genzoo


def build(family: str, data: str):
    image = data == "image"  # 8x8 grayscale, the size of scikit-learn's digits; else 2-D points
    if family == "gan":
        model = genzoo.DCGANGenerator(sample_size=8, out_channels=1) if image else genzoo.MLPGenerator(sample_size=2)
        return genzoo.GANPipeline(generator=model)
    if family == "vae":
        if image:
            vae = diffusers.AutoencoderKL(
                in_channels=1, out_channels=1, sample_size=8, latent_channels=4, block_out_channels=(32, 64),
                norm_num_groups=32, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            )
        else:
            vae = genzoo.MLPVAE(sample_size=2, latent_dim=2)
        return genzoo.VAEPipeline(vae=vae)
    unet = (
        diffusers.UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64), norm_num_groups=32,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        )
        if image
        else genzoo.MLPDenoiser(sample_size=2)
    )
    if family == "ddpm":  # clipping x_0 to [-1, 1] suits images, not points in data units
        return genzoo.DDPMPipeline(unet=unet, scheduler=genzoo.DDPMScheduler(clip_sample=image))
    return genzoo.FlowMatchingPipeline(unet=unet, scheduler=genzoo.FlowMatchEulerScheduler())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=["gan", "vae", "ddpm", "flow-matching"])
    parser.add_argument("output_dir")
    parser.add_argument("--data", choices=["image", "vector"], default="image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    build(args.family, args.data).save_pretrained(args.output_dir)
    print(f"saved an untrained {args.family} pipeline for {args.data} data to {args.output_dir}")


if __name__ == "__main__":
    main()
