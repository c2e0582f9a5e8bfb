"""Task 2: the ECG-LLM. ECG tokens from the frozen MS-CNN, projected and spliced into a causal LM with LoRA."""
