"""`atm-bench models describe`: parameter counts and counted MACs of ATM's models at a preset."""

from __future__ import annotations


def register(sub) -> None:
    models = sub.add_parser("models", help="ATM's models: sizes and compute at a preset")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_sub.required = True
    describe = models_sub.add_parser("describe", help="print parameter counts and MACs of one forward of each model")
    describe.add_argument("--preset", default="paper", help="smoke, quick or paper (default paper)")
    describe.add_argument("--text-dim", type=int, default=None,
                          help="instruction embedding width (default: the preset's, 768 = bert-base-cased; 384 = MiniLM)")
    describe.set_defaults(handler=_describe)


def _describe(args) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.atm.stages import policy_config
    from atm_bench.atm.track_transformer import TrackTransformer
    from atm_bench.atm.transformer import count_parameters
    from atm_bench.atm.step_cost import measure_atm_step
    from atm_bench.flops import count_flops
    from atm_bench.presets import get_preset

    torch.set_num_threads(1)
    preset = get_preset(args.preset)
    if args.text_dim:
        preset = preset.with_text_dim(args.text_dim)
    tcfg = preset.track_model
    track = TrackTransformer(tcfg).eval()
    atm = TrackGuidedPolicy(preset.policy).eval()
    bc = TrackGuidedPolicy(policy_config(preset, True, preset.policy.text_dim)).eval()
    h, w = tcfg.image_hw
    track_fwd, _ = count_flops(track.predict, torch.zeros(1, 3, h, w), torch.rand(1, tcfg.num_points, 2),
                               torch.zeros(1, tcfg.text_dim))
    atm_step = measure_atm_step(track, atm)
    bc_step = measure_atm_step(track, bc)

    table = Table(title=f"ATM models at preset '{preset.name}' (MACs counted with FlopCounterMode, batch 1)")
    for col in ("model", "parameters", "MACs of one forward", "notes"):
        table.add_column(col, justify="right" if col in ("parameters", "MACs of one forward") else "left")
    table.add_row("track transformer", f"{count_parameters(track) / 1e6:.2f} M", f"{track_fwd.macs / 1e9:.3f} G",
                  f"{tcfg.num_tokens} tokens, {tcfg.num_points} points x {tcfg.track_len} steps, {h}x{w}")
    table.add_row("ATM policy (trainable)", f"{count_parameters(atm) / 1e6:.2f} M",
                  f"{atm_step.policy_macs / 1e9:.3f} G", "one new env step: spatial pass of both views + temporal + head")
    table.add_row("BC policy (same network, language)", f"{count_parameters(bc) / 1e6:.2f} M",
                  f"{bc_step.policy_macs / 1e9:.3f} G", "tracks zeroed, no track model")
    costs = atm_step.to_dict(600)
    table.add_row("ATM full env step", "", f"{atm_step.full_macs / 1e9:.3f} G",
                  f"{atm_step.views} track-model forwards + policy")
    console = Console()
    console.print(table)
    console.print(f"600-step task: paper convention (one track-model forward per step) "
                  f"{costs['paper_convention_tmac_per_600_steps']:.3f} TMAC; full "
                  f"{costs['full_tmac_per_600_steps']:.3f} TMAC (the paper reports 1.56 T for ATM)")
    return 0
