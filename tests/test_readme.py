"""The README's Python examples run as written, on a smoke run in place of runs/cpu."""

import re

import torch

from conftest import REPO


def test_python_examples_run_as_written(smoke_run, small_cinc):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks).replace('"runs/cpu', f'"{smoke_run}').replace('"training2017"', f'"{small_cinc}"')
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["p_af"]) == len(namespace["ids"])
    assert namespace["feature_map"].shape[1] == namespace["encoder"].config.feature_steps
    model = namespace["model"]
    assert namespace["inputs"].shape[-1] == model.projector[0].in_features
    diagnosis = namespace["diagnosis"]
    assert diagnosis.calibrated and diagnosis.threshold_log_odds == model.calibration.log_odds
    assert 0 <= float(namespace["p"][0]) <= 1 and isinstance(namespace["answer"][0], str)
    assert isinstance(namespace["x"], torch.Tensor)
