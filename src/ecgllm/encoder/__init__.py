"""Task 1: the MS-CNN encoder (Fan et al. 2018), an ensemble of them, their training and evaluation."""

from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS, MSCNNConfig
from ecgllm.encoder.modeling_mscnn import MSCNN, MSCNNEnsemble, load_encoder

__all__ = ["ENCODER_PRESETS", "MSCNN", "MSCNNConfig", "MSCNNEnsemble", "load_encoder"]
