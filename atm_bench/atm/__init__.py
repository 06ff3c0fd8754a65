"""ATM's two models and their training: the track transformer (stage 1) and the track-guided
policy (stage 2), plus datasets, augmentation, language embeddings and the ATM agent.

Submodules import torch; import them explicitly (`from atm_bench.atm.track_transformer import ...`)
so that importing this package stays cheap.
"""
