"""Training R1-Omni on your own clips: datasets, the encode-once feature cache, cold-start SFT and GRPO with
verifiable rewards, evaluation. Builds on ``model/``; checkpoints come out in the published layout."""
