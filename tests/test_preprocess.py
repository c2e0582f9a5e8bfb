import numpy as np
import pytest

from ecgllm.data.preprocess import (
    AugmentConfig,
    PreprocessConfig,
    aggregate_windows,
    augment_crop,
    crop_or_pad,
    sliding_windows,
    window_starts,
    zscore,
)


def test_zscore():
    x = zscore(np.arange(100, dtype=float) * 3 + 7)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-5 and x.dtype == np.float32


def test_center_crop_and_pad():
    x = np.arange(10, dtype=np.float32)
    assert crop_or_pad(x, 4).tolist() == [3, 4, 5, 6]
    assert crop_or_pad(x, 12).tolist() == list(range(10)) + [0, 0]
    rng = np.random.default_rng(0)
    starts = {crop_or_pad(x, 4, "random", rng)[0] for _ in range(200)}
    assert starts == set(range(7))
    with pytest.raises(ValueError, match="crop mode"):
        crop_or_pad(x, 4, "left")


def test_windows_cover_the_whole_record():
    assert window_starts(9000, 2400, 1200) == [0, 1200, 2400, 3600, 4800, 6000, 6600]
    assert window_starts(2400, 2400, 1200) == [0]
    assert window_starts(1000, 2400, 1200) == [0]
    windows = sliding_windows(np.arange(9000, dtype=np.float32), 2400, 1200)
    assert windows.shape == (7, 2400) and windows[-1, -1] == 8999
    assert sliding_windows(np.ones(1000, np.float32), 2400, 1200).shape == (1, 2400)


def test_augment_crop_shapes_and_scaling():
    rng = np.random.default_rng(0)
    x = zscore(np.sin(np.linspace(0, 100, 9000)))
    crop = augment_crop(x, 2400, AugmentConfig(noise_std=0.0, time_scale=(1.1, 1.1)), rng, 1200)
    assert crop.shape == (2400,) and crop.dtype == np.float32
    plain = augment_crop(x, 2400, AugmentConfig(enabled=False), rng, 1200)
    assert any(np.allclose(plain, x[s:s + 2400]) for s in range(0, 9000 - 2400 + 1))
    noisy = augment_crop(np.zeros(3000, np.float32), 2400, AugmentConfig(noise_std=0.5, time_scale=(1, 1)), rng,
                         1200)
    assert 0.4 < noisy.std() < 0.6


def test_a_record_shorter_than_the_crop_is_padded_as_at_inference_not_stretched():
    rng = np.random.default_rng(0)
    short = zscore(np.sin(np.linspace(0, 30, 1500)))
    crop = augment_crop(short, 2400, AugmentConfig(noise_std=0.0, time_scale=(1.0, 1.0)), rng, 1200)
    assert np.allclose(crop[:1500], short) and not crop[1500:].any()
    assert np.array_equal(crop, sliding_windows(short, 2400, 1200)[0])


def test_short_crops_cut_a_share_of_crops_to_between_the_shortest_record_and_all_of_it():
    x = zscore(np.sin(np.linspace(0, 100, 9000))) + 2  # no zero inside the signal
    config = AugmentConfig(noise_std=0.0, time_scale=(1.0, 1.0), short_crop=0.5)
    rng = np.random.default_rng(0)
    kept = np.array([np.count_nonzero(augment_crop(x, 2400, config, rng, 600)) for _ in range(400)])
    assert kept.min() >= 600 and np.any(kept < 1200) and kept.max() == 2400  # a 32-s window cut down to 8 s
    assert 0.4 < np.mean(kept < 2400) < 0.6
    never = AugmentConfig(noise_std=0.0, time_scale=(1.0, 1.0))
    assert all(np.count_nonzero(augment_crop(x, 2400, never, rng, 600)) == 2400 for _ in range(50))
    with pytest.raises(ValueError, match="short_crop"):
        AugmentConfig(short_crop=1.5)


def test_aggregate():
    p = np.array([0.1, 0.9, 0.5])
    assert aggregate_windows(p, "mean") == pytest.approx(0.5)
    assert aggregate_windows(p, "max") == pytest.approx(0.9)
    with pytest.raises(ValueError):
        aggregate_windows(p, "median")


def test_an_encoder_may_read_a_coarser_rate_than_a_recording_is_accepted_at():
    assert PreprocessConfig(fs=75.0).fs == 75.0  # 2400 samples span 32 s
    with pytest.raises(ValueError, match="fs"):
        PreprocessConfig(fs=40.0)
