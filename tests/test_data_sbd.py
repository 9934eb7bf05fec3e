"""SBD's MATLAB masks (``cls/*.mat``) are read into class-index masks for VOC trainaug."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as scipy_io

from deeplab_edu.data.voc import _load_sbd_mask


def test_sbd_mat_mask_is_read(tmp_path: Path) -> None:
    seg = np.zeros((5, 7), dtype=np.uint8)
    seg[1:4, 2:6] = 15  # person
    seg[0, 0] = 3
    scipy_io.savemat(tmp_path / "2008_000002.mat",
                     {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros((1, 20)), "CategoriesPresent": [3, 15]}})
    mask = _load_sbd_mask(tmp_path / "2008_000002")
    assert mask.dtype == np.uint8 and mask.shape == (5, 7)
    np.testing.assert_array_equal(mask, seg)


def test_missing_sbd_mask_names_both_files(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"2008_000003\.mat.*2008_000003\.png"):
        _load_sbd_mask(tmp_path / "2008_000003")


def test_a_damaged_or_foreign_sbd_mask_names_its_file(tmp_path: Path) -> None:
    """A damaged .mat raised scipy's "Unknown mat file type" without its path; a label of 40 was only
    found later, under the name of the derived PNG."""
    from deeplab_edu.data import BadDataError

    (tmp_path / "2008_000004.mat").write_bytes(b"not a MATLAB file" * 20)
    with pytest.raises(BadDataError, match=r"2008_000004\.mat is not a readable SBD annotation"):
        _load_sbd_mask(tmp_path / "2008_000004")
    seg = np.full((4, 4), 40, dtype=np.uint8)
    scipy_io.savemat(tmp_path / "2008_000005.mat", {"GTcls": {"Segmentation": seg}})
    with pytest.raises(BadDataError, match=r"2008_000005\.mat holds labels \[40\]"):
        _load_sbd_mask(tmp_path / "2008_000005")
