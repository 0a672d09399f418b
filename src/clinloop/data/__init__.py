"""Multi-rater data: the sample type, dataset readers, fusion, splits, synthetic data."""
from clinloop.data.registry import Dataset, ListDataset, available_formats, detect_format, load_dataset, reader_accepts
from clinloop.data.sample import MultiRaterSample

__all__ = ["MultiRaterSample", "Dataset", "ListDataset", "load_dataset", "detect_format", "available_formats",
           "reader_accepts"]
