"""Inference: diagnosing recordings of any length, rate and format with a trained ECG-LLM."""
