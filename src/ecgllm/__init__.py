"""ECG-LLM: screen single-lead ECGs for atrial fibrillation and explain the answer in words."""

__version__ = "0.1.0"
