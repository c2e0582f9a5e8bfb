"""Configuration of the MS-CNN and its presets. The checkpoint carries this, so stream-2's kernel cannot mismatch."""

from dataclasses import dataclass, field

from ecgllm.data.preprocess import PreprocessConfig


@dataclass
class MSCNNConfig:
    preset: str = "paper"
    base_widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    convs_per_block: tuple[int, ...] = (2, 2, 3, 3, 3)
    pool_sizes: tuple[int, ...] = (3, 3, 2, 2, 2)
    k_size_stream1: int = 3
    k_size_stream2: int = 7  # 5, 7 or 9 in the paper; used in the first `large_kernel_blocks` blocks of stream 2
    large_kernel_blocks: int = 2
    width_multiplier: float = 1.0
    conv_batch_norm: bool = False  # not in the paper; makes the small CPU presets train in few epochs
    head_widths: tuple[int, ...] = (1024, 256)
    dropout: float = 0.5
    task: str = "binary"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # Decision thresholds on P(AF), chosen on the validation split after training, per evaluation mode.
    thresholds: dict[str, float] = field(default_factory=lambda: {"center": 0.5, "whole": 0.5})

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(max(4, int(round(w * self.width_multiplier))) for w in self.base_widths)

    @property
    def feature_dim(self) -> int:
        """Size of `features(x)`: both streams' last width (1024 at full width)."""
        return 2 * self.widths[-1]

    @property
    def feature_steps(self) -> int:
        """Time steps of `feature_map(x)` (33 for 2400 samples)."""
        steps = self.preprocess.window
        for pool in self.pool_sizes:
            steps //= pool
        return steps


ENCODER_PRESETS: dict[str, MSCNNConfig] = {
    # The original network at full width (≈8 min per epoch on 2 CPU cores).
    "paper": MSCNNConfig(preset="paper"),
    # Quarter width with batch norm: trains on 2 CPU cores in about 15 minutes.
    "cpu": MSCNNConfig(preset="cpu", width_multiplier=0.25, conv_batch_norm=True, k_size_stream2=9),
    # Tiny: runs the real pipeline end to end in a minute for tests.
    "smoke": MSCNNConfig(preset="smoke", width_multiplier=1 / 16, conv_batch_norm=True, head_widths=(32, 16),
                         dropout=0.1),
}
