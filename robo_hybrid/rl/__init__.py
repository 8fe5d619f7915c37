"""RL fine-tuning of the pretrained policy: PPO, asymmetric transformer critic, reward shaping, RND.

Kept light (no torch import here) because `robo_hybrid.config` registers `rl.config.PPOConfig` in Hydra.
Modules: config (PPOConfig & co.), storage (rollout buffer, GAE), ppo (losses, PPO), critic, reward_model,
shaping, rnd, rollout / collector (vector envs), evaluate, train (`train_ppo`), ablation (`run_ablations`).
"""
