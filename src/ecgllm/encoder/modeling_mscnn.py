"""MS-CNN: two VGG-style 1-D streams with different kernel sizes, fused after global average pooling; and an ensemble
of them read as one encoder.

Fan et al., "Multiscaled fusion of deep convolutional neural networks for screening atrial fibrillation from single
lead short ECG recordings", IEEE JBHI 2018.
"""

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ecgllm.encoder.configuration_mscnn import MSCNNConfig
from ecgllm.modeling_utils import CONFIG_NAME, PretrainedMixin, load_config


class ConvBlock(nn.Sequential):
    """`n_convs` x (Conv1d 'same' -> [BatchNorm] -> ReLU), then MaxPool1d(pool)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_convs: int, pool: int,
                 batch_norm: bool):
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(nn.Conv1d(in_channels if i == 0 else out_channels, out_channels, kernel_size,
                                    padding="same", bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.MaxPool1d(pool))
        super().__init__(*layers)


class Stream(nn.Sequential):
    def __init__(self, config: MSCNNConfig, large_kernel: int):
        blocks, in_channels = [], 1
        for i, (width, n_convs, pool) in enumerate(zip(config.widths, config.convs_per_block, config.pool_sizes)):
            kernel = large_kernel if i < config.large_kernel_blocks else config.k_size_stream1
            blocks.append(ConvBlock(in_channels, width, kernel, n_convs, pool, config.conv_batch_norm))
            in_channels = width
        super().__init__(*blocks)


class ClassifierHead(nn.Sequential):
    """feature -> FC -> BN -> ReLU -> Dropout ... -> logits (one of AF, or one per class)."""

    def __init__(self, config: MSCNNConfig):
        layers: list[nn.Module] = []
        in_features = config.feature_dim
        for width in config.head_widths:
            layers += [nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
                       nn.Dropout(config.dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, config.num_outputs))
        super().__init__(*layers)


class MSCNN(PretrainedMixin, nn.Module):
    config_class = MSCNNConfig
    model_type = "mscnn"

    def __init__(self, config: MSCNNConfig):
        super().__init__()
        if config.members != 1:
            raise ValueError(f"an MSCNN is one network; {config.members} members make an MSCNNEnsemble "
                             "(load_encoder reads either)")
        self.config = config
        self.stream1 = Stream(config, config.k_size_stream1)
        self.stream2 = Stream(config, config.k_size_stream2)
        self.head = ClassifierHead(config)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] z-scored -> [B, T, feature_dim] before pooling (T = 33 for L = 2400)."""
        fused = torch.cat([self.stream1(x), self.stream2(x)], dim=1)  # [B, feature_dim, T]
        return fused.transpose(1, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] -> [B, feature_dim]: global average pooling of each stream, concatenated."""
        return self.feature_map(x).mean(dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """[B, feature_dim] pooled features -> [B, num_outputs] logits."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] -> logits of AF [B] (binary task), or of each class [B, C]."""
        logits = self.classify(self.features(x))
        return logits.squeeze(-1) if self.config.task == "binary" else logits


class MSCNNEnsemble(PretrainedMixin, nn.Module):
    """`config.members` MS-CNNs of one architecture, trained apart on the same records, read as one encoder: their
    feature maps side by side (what an ECG-LLM reads) and their class probabilities averaged (what it decides by).
    Its logits are the log of the averaged probabilities, so everything that turns an MS-CNN's logits into
    probabilities reads an ensemble alike."""

    config_class = MSCNNConfig
    model_type = "mscnn"

    def __init__(self, config: MSCNNConfig):
        super().__init__()
        self.config = config
        member = dataclasses.replace(config, members=1)
        self.members = nn.ModuleList(MSCNN(member) for _ in range(config.members))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] -> [B, T, members * D]."""
        return torch.cat([member.feature_map(x) for member in self.members], dim=-1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """[B, members * D] -> [B, num_outputs]: log of the members' averaged probabilities (binary: the log-odds of
        their averaged P(AF))."""
        chunks = features.chunk(len(self.members), dim=-1)
        logits = torch.stack([m.classify(c) for m, c in zip(self.members, chunks)])  # [K, B, num_outputs]
        if self.config.task == "binary":
            return torch.logsumexp(F.logsigmoid(logits), 0) - torch.logsumexp(F.logsigmoid(-logits), 0)
        return torch.logsumexp(torch.log_softmax(logits, -1), 0) - math.log(len(self.members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] -> [B] (binary task) or [B, C], as an MSCNN's."""
        logits = self.classify(self.features(x))
        return logits.squeeze(-1) if self.config.task == "binary" else logits


Encoder = MSCNN | MSCNNEnsemble  # what the rest of the pipeline reads ECGs with


def load_encoder(folder: str | Path) -> Encoder:
    """The MS-CNN, or ensemble of them, saved in `folder`."""
    config = load_config(MSCNNConfig, Path(folder) / CONFIG_NAME, MSCNN.model_type)
    model_class = MSCNN if config.members == 1 else MSCNNEnsemble
    return model_class.from_pretrained(folder)
