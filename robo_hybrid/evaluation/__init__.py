"""Evaluation: one episode runner over a vector env, one report with a Wilson interval, one seed source."""

from .evaluator import Evaluator, held_out_seeds
from .report import EvalReport, wilson_interval
from .runner import ActFn, EpisodeRecord, policy_act_fn, run_episodes

__all__ = ["ActFn", "EpisodeRecord", "EvalReport", "Evaluator", "held_out_seeds", "policy_act_fn", "run_episodes",
           "wilson_interval"]
