import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

REPO = Path(__file__).resolve().parents[1]
CINC_DIR = Path(os.environ.get("ECGLLM_CINC_DIR", REPO.parent / "shared" / "data" / "cinc2017" / "training2017"))
LUDB_DIR = Path(os.environ.get("ECGLLM_LUDB_DIR", REPO.parent / "shared" / "data" / "ludb"))


def read_reference(folder: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(",")) for line in (folder / "REFERENCE.csv").read_text().split()]


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """Converted and built backbones go to a fresh cache, so tests never depend on the user's."""
    folder = tmp_path_factory.mktemp("ecgllm_cache")
    os.environ["ECGLLM_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def cinc_dir() -> Path:
    if not (CINC_DIR / "REFERENCE.csv").exists():
        pytest.skip(f"CinC 2017 data not found at {CINC_DIR} (set ECGLLM_CINC_DIR)")
    return CINC_DIR


@pytest.fixture(scope="session")
def ludb_dir() -> Path:
    if not (LUDB_DIR / "data" / "1.hea").exists():
        pytest.skip(f"LUDB not found at {LUDB_DIR} (set ECGLLM_LUDB_DIR)")
    return LUDB_DIR


def copy_records(source: Path, target: Path, n_normal: int, n_af: int, n_other: int = 0, n_noisy: int = 0
                 ) -> list[tuple[str, str]]:
    """A small real CinC folder: the first records of each class, with headers and a REFERENCE.csv."""
    target.mkdir(parents=True, exist_ok=True)
    rows = read_reference(source)
    chosen = [r for label, n in (("N", n_normal), ("A", n_af), ("O", n_other), ("~", n_noisy))
              for r in [r for r in rows if r[1] == label][:n]]
    chosen.sort()
    for name, _ in chosen:
        for suffix in (".mat", ".hea"):
            shutil.copy(source / f"{name}{suffix}", target / f"{name}{suffix}")
    (target / "REFERENCE.csv").write_text("".join(f"{n},{label}\n" for n, label in chosen))
    return chosen


@pytest.fixture(scope="session")
def small_cinc(cinc_dir, tmp_path_factory) -> Path:
    """60 normal and 20 AF real records: enough for a smoke run end to end."""
    folder = tmp_path_factory.mktemp("cinc_small")
    copy_records(cinc_dir, folder, 60, 20)
    return folder


@pytest.fixture(scope="session")
def small_cinc_four(cinc_dir, tmp_path_factory) -> Path:
    """Real records of all four classes (40 N, 16 A, 24 O, 16 ~)."""
    folder = tmp_path_factory.mktemp("cinc_four")
    copy_records(cinc_dir, folder, 40, 16, 24, 16)
    return folder


def write_mat(path: Path, **variables) -> None:
    scipy.io.savemat(str(path), variables, format="4")


def synthetic_ecg(seconds: float = 10, fs: float = 300, seed: int = 0) -> np.ndarray:
    """int16 adu (1000/mV): spiky beats on noise, enough to pass validation."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    signal = rng.normal(0, 30, n)
    signal[:: int(0.8 * fs)] += 1000
    return signal.astype(np.int16)[None]


@pytest.fixture(scope="session")
def smoke_encoder(tmp_path_factory) -> Path:
    """An untrained smoke-preset MS-CNN checkpoint: enough to test the LLM plumbing."""
    import torch

    from ecgllm.encoder import ENCODER_PRESETS, MSCNN

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("smoke_encoder")
    MSCNN(ENCODER_PRESETS["smoke"]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smoke_model_dir(smoke_encoder, tmp_path_factory) -> Path:
    """An untrained smoke ECG-LLM saved as a model folder: enough to test diagnosis and evaluation plumbing."""
    import torch

    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
    from ecgllm.llm.modeling_ecgllm import ECGLLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("smoke_llm")
    ECGLLM.build(LLM_PRESETS["smoke"][0], smoke_encoder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smoke_run(small_cinc, tmp_path_factory) -> Path:
    """`ecgllm run --task binary --preset smoke` on the small real folder, once for every test that needs a trained
    run."""
    from ecgllm.cli import main

    run = tmp_path_factory.mktemp("smoke_run")
    assert main(["-q", "run", "--data", str(small_cinc), "--out", str(run), "--preset", "smoke", "--task",
                 "binary"]) == 0
    return run


@pytest.fixture(scope="session")
def four_class_run(small_cinc_four, tmp_path_factory) -> Path:
    """`ecgllm run --preset smoke` (the four-class task, the default) on real records of all four classes."""
    from ecgllm.cli import main

    folder = tmp_path_factory.mktemp("four_run")
    assert main(["-q", "run", "--data", str(small_cinc_four), "--out", str(folder), "--preset", "smoke"]) == 0
    return folder


CHROMIUM = Path(os.environ.get("ECGLLM_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (Playwright's own browser download cannot work offline)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ECGLLM_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()
