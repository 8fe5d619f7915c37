"""robo-hybrid: multimodal transformer manipulation stack (training side)."""
