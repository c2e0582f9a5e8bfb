"""Data: reading CinC 2017 records, checking a folder, the saved split, preprocessing, download."""

from ecgllm.data.dataset import CinCDataset, load_cinc_folder
from ecgllm.data.records import ECGRecord, load_cinc_record
from ecgllm.data.split import Split, make_split

__all__ = ["CinCDataset", "ECGRecord", "Split", "load_cinc_folder", "load_cinc_record", "make_split"]
