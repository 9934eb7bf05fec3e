"""Data for the course: the offline procedural scenes and the real data sets, one module each.

* :mod:`~deeplab_edu.data.procedural`: :class:`ProceduralScenes`, the seeded offline default;
* :mod:`~deeplab_edu.data.voc`, :mod:`~deeplab_edu.data.camvid`, :mod:`~deeplab_edu.data.cityscapes`:
  loaders for PASCAL VOC 2012 (+ SBD trainaug), CamVid and Cityscapes;
* :mod:`~deeplab_edu.data.own`: :class:`FolderDataset`, your own images and masks (``"folder"``);
  :class:`~deeplab_edu.data.folder.SegmentationFolder` reads any list of (image, mask) files;
* :mod:`~deeplab_edu.data.transforms`: the DeepLab joint augmentation (``train_transform``,
  ``eval_transform``);
* :mod:`~deeplab_edu.data.io`: reading and checking image and mask files;
* :mod:`~deeplab_edu.data.classes`: class names, palettes, the ignore label 255;
* :func:`build_dataset`: every data set by name.

Every data set yields ``(image, mask)``: image float32 (3, H, W), mask int64 (H, W), 255 = ignore.
"""

from .camvid import CamVid
from .classes import CAMVID, CITYSCAPES, IGNORE_INDEX, VOC, ClassInfo
from .cityscapes import Cityscapes
from .folder import SegmentationFolder
from .io import BadDataError, DatasetNotFoundError, SegmentationDataset
from .own import FolderDataset, read_classes
from .paths import data_home, find_camvid, find_dataset_root
from .procedural import PROCEDURAL, ProceduralScenes
from .registry import DATASETS, build_dataset
from .voc import VOCSegmentation

__all__ = [
    "CAMVID",
    "CITYSCAPES",
    "DATASETS",
    "IGNORE_INDEX",
    "PROCEDURAL",
    "VOC",
    "BadDataError",
    "CamVid",
    "ClassInfo",
    "Cityscapes",
    "DatasetNotFoundError",
    "FolderDataset",
    "ProceduralScenes",
    "SegmentationDataset",
    "SegmentationFolder",
    "VOCSegmentation",
    "build_dataset",
    "data_home",
    "find_camvid",
    "find_dataset_root",
    "read_classes",
]
