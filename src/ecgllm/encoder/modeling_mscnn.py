"""MS-CNN: two VGG-style 1-D streams with different kernel sizes, fused after global average pooling.

Fan et al., "Multiscaled fusion of deep convolutional neural networks for screening atrial fibrillation from single
lead short ECG recordings", IEEE JBHI 2018.
"""

import torch
from torch import nn

from ecgllm.encoder.configuration_mscnn import MSCNNConfig
from ecgllm.modeling_utils import PretrainedMixin


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, L] -> logits of AF [B] (binary task), or of each class [B, C]."""
        logits = self.head(self.features(x))
        return logits.squeeze(-1) if self.config.task == "binary" else logits
