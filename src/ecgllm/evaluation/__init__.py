"""Evaluation: binary metrics with bootstrap intervals, threshold choice on validation, paired comparisons."""

from ecgllm.evaluation.metrics import binary_metrics, choose_threshold, evaluate_predictions

__all__ = ["binary_metrics", "choose_threshold", "evaluate_predictions"]
