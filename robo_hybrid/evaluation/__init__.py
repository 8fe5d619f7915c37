"""Evaluation: one episode runner (vector env or process pool), one report with a Wilson interval, one seed source."""
