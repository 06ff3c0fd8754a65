"""What a space-time UNet would cost as UniPi's video model: counted MACs of diffusers'
`UNet3DConditionModel` at AVDC's widths (128 x (1, 2, 3, 4, 5), 2 blocks per level, cross-attention
at the two coarsest levels, 32-d heads), one generation = `--steps` denoising forwards (DDIM; the
scheduler's arithmetic is negligible), for several resolutions and frame counts, against the
paper's Table IV (ATM 1.56, UniPi 39.29, UniPi-Replan 2946.75 T per 600-step task).

The input is AVDC's: the conditioning frame concatenated to every noisy frame on the channels
(6 channels, N frames). Counted on the meta device (shapes only: seconds on a CPU).

    .venv/bin/python benchmarks/unipi_3d_cost.py

This is the measurement behind the decision in the issue "Fidelity" (UniPi's video model as the
paper's); `baselines/video_diffusion.py` still uses the 2-D UNet over stacked frames.
"""

from __future__ import annotations

import argparse

import torch

from atm_bench.flops import count_flops

PAPER_T = {"ATM": 1.56, "UniPi": 39.29, "UniPi-Replan": 2946.75}
WIDTHS = (128, 256, 384, 512, 640)
ATTENTION = (False, False, False, True, True)


def forward_macs(size: int, frames: int, text_dim: int = 384) -> int:
    from diffusers import UNet3DConditionModel

    down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in ATTENTION)
    up = tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(ATTENTION))
    with torch.device("meta"):
        unet = UNet3DConditionModel(sample_size=size, in_channels=6, out_channels=3, down_block_types=down,
                                    up_block_types=up, block_out_channels=WIDTHS, layers_per_block=2,
                                    cross_attention_dim=text_dim, attention_head_dim=32, norm_num_groups=32)
    x = torch.zeros(1, 6, frames, size, size, device="meta")
    text = torch.zeros(1, 1, text_dim, device="meta")
    t = torch.tensor(10, device="meta")
    return count_flops(lambda: unet(x, t, encoder_hidden_states=text).sample)[0].macs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="denoising steps per generation (AVDC: 100)")
    parser.add_argument("--replan-every", type=int, default=8, help="UniPi-Replan's H (600 / H generations per task)")
    args = parser.parse_args()
    generations = 600 // args.replan_every
    print(f"| size | frames | GMAC / forward | TMAC / generation | / ATM's {PAPER_T['ATM']} T | "
          f"x {generations} generations / one 7-frame generation |")
    print("|---|---|---|---|---|---|")
    cost = {(s, n): forward_macs(s, n) * args.steps / 1e12 for s in (64, 128) for n in (1, 7)}
    for (size, frames), tmac in cost.items():
        print(f"| {size} | {frames} | {tmac * 1e3 / args.steps:.1f} | {tmac:.2f} | {tmac / PAPER_T['ATM']:.1f}x | "
              f"{generations * tmac / cost[(size, 7)]:.1f}x |")
    print(f"the paper: UniPi / ATM {PAPER_T['UniPi'] / PAPER_T['ATM']:.1f}x, "
          f"UniPi-Replan / UniPi {PAPER_T['UniPi-Replan'] / PAPER_T['UniPi']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
