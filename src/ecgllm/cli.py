"""The `ecgllm` command: a thin layer over the Python API."""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ecgllm import __version__
from ecgllm.errors import ECGLLMError

logger = logging.getLogger("ecgllm")


def _data_check(args) -> int:
    from ecgllm.data.dataset import check_folder

    print(check_folder(args.dir, progress=not args.quiet).report())
    return 0


def _data_split(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import make_split

    dataset = load_cinc_folder(args.dir, task=args.task, progress=not args.quiet)
    split = make_split(dataset.labels, args.task, args.seed)
    split.save(args.out)
    print(f"{args.out}: {split.summary()}")
    return 0


def _data_download(args) -> int:
    from ecgllm.data.download import PHYSIONET_URL, download_cinc2017

    folder = download_cinc2017(args.out, args.url or PHYSIONET_URL, args.sha256, progress=not args.quiet)
    print(f"data ready in {folder}")
    return 0


def _encoder_train(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import Split
    from ecgllm.encoder.configuration_mscnn import ENCODER_PRESETS
    from ecgllm.encoder.training import TRAINING_PRESETS, train_encoder

    model_config = ENCODER_PRESETS[args.preset]
    if args.k_size_stream2 is not None:
        model_config = dataclasses.replace(model_config, k_size_stream2=args.k_size_stream2)
    if args.width_multiplier is not None:
        model_config = dataclasses.replace(model_config, width_multiplier=args.width_multiplier)
    overrides = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                    "balance": args.balance, "seed": args.seed}.items() if v is not None}
    train_config = dataclasses.replace(TRAINING_PRESETS[args.preset], **overrides)
    split = Split.load(args.split)
    dataset = load_cinc_folder(args.data, task=split.task, progress=not args.quiet)
    train_encoder(dataset, split, args.out, model_config, train_config, progress=not args.quiet)
    return 0


def _encoder_evaluate(args) -> int:
    from ecgllm.data.dataset import load_cinc_folder
    from ecgllm.data.split import Split
    from ecgllm.encoder.evaluate import evaluate_encoder, format_encoder_result
    from ecgllm.encoder.modeling_mscnn import MSCNN

    model = MSCNN.from_pretrained(args.model)
    split = Split.load(args.split)
    dataset = load_cinc_folder(args.data, task=split.task, progress=not args.quiet)
    out = args.out or Path(args.model) / "eval"
    result = evaluate_encoder(model, dataset, split, out, args.split_name, progress=not args.quiet)
    print(format_encoder_result(result))
    print(f"written to {out}")
    return 0


def _run(args) -> int:
    from ecgllm.pipeline import run

    run(args.data, args.out, args.preset, args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgllm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecgllm {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="check, split or download a CinC 2017 folder").add_subparsers(
        dest="data_command", required=True)
    check = data.add_parser("check", help="load every record and list the bad ones")
    check.add_argument("dir", type=Path)
    check.set_defaults(func=_data_check)
    split = data.add_parser("split", help="stratified 75/10/15 split saved as record ids")
    split.add_argument("dir", type=Path)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--task", default="binary", choices=["binary", "four"])
    split.add_argument("--seed", type=int, default=42)
    split.set_defaults(func=_data_split)
    download = data.add_parser("download", help="fetch training2017.zip from PhysioNet and unpack it")
    download.add_argument("--out", type=Path, required=True)
    download.add_argument("--url", help="where training2017.zip lives (default: PhysioNet)")
    download.add_argument("--sha256", default=None, help="expected checksum of the archive")
    download.set_defaults(func=_data_download)

    encoder = commands.add_parser("encoder", help="Task 1: the MS-CNN").add_subparsers(
        dest="encoder_command", required=True)
    train = encoder.add_parser("train", help="train an MS-CNN preset")
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--split", type=Path, required=True)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"])
    train.add_argument("--k-size-stream2", type=int, choices=[5, 7, 9])
    train.add_argument("--width-multiplier", type=float)
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--balance", choices=["oversample", "weight", "none"])
    train.add_argument("--seed", type=int)
    train.set_defaults(func=_encoder_train)
    evaluate = encoder.add_parser("evaluate", help="metrics with 95%% intervals on a split")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--split", type=Path, required=True)
    evaluate.add_argument("--split-name", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--out", type=Path)
    evaluate.set_defaults(func=_encoder_evaluate)

    main_job = commands.add_parser("run", help="the main job: split, encoder, evaluation (resumable)")
    main_job.add_argument("--data", type=Path, required=True)
    main_job.add_argument("--out", type=Path, required=True)
    main_job.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"])
    main_job.add_argument("--seed", type=int, default=42)
    main_job.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ecgllm.utils import setup_logging

    setup_logging(args.verbose)
    try:
        return args.func(args)
    except ECGLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
