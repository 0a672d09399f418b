"""``clinloop data info|convert|formats`` in-process, plus one console-script run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clinloop.cli import main
from clinloop.cli.data import parse_option
from clinloop.data import MultiRaterSample, load_dataset
from clinloop.data.readers.canonical import write_canonical
from clinloop.data.stats import dataset_stats


def _m(*pixels, shape=(4, 4)):
    m = np.zeros(shape, bool)
    for r, c in pixels:
        m[r, c] = True
    return m


@pytest.fixture
def small(tmp_path):
    """Five cases with hand-computable statistics (see test_info_json)."""
    img = np.full((1, 4, 4), 10.0, np.float32)
    a = np.stack([_m((0, 0), (0, 1), (1, 0), (1, 1)), _m((0, 0), (0, 1)), _m()])
    b = np.stack([_m((2, 2)), _m((2, 2)), _m((3, 3))])
    samples = [
        MultiRaterSample(img, a, case_id="A", rater_ids=["r1", "r2", "r3"], structure="nodule"),
        MultiRaterSample(img, b, case_id="B", rater_ids=["r1", "r2", "r3"], rater_valid=np.array([True, True, False])),
        MultiRaterSample(np.zeros((1, 5, 5), np.float32), _m((1, 1), shape=(5, 5))[None], case_id="C",
                         rater_ids=["r1"]),
        MultiRaterSample(img * 2, np.zeros((0, 4, 4), bool), case_id="D"),
        MultiRaterSample(img, np.zeros((2, 4, 4), bool), case_id="E", rater_ids=["r1", "r2"], spacing=(0.5, 0.5)),
    ]
    return write_canonical(samples, tmp_path / "small")


def test_info_json_hand_computed(small, capsys):
    assert main(["data", "info", str(small), "--json", "--quiet"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["format"] == "canonical" and st["n_cases"] == 5 and st["n_patients"] == 5
    assert st["raters_per_case"] == {"min": 0, "max": 3}
    assert st["valid_raters_per_case"] == {"min": 0, "max": 3}
    # A: Dice(r1,r2) = 2*2/(4+2) = 2/3, the empty r3 scores 0 with both -> 2/9;
    # B: valid r1 == r2 -> 1; E: two empty masks -> 1 (empty-empty pair); C has 1 rater, D none
    assert st["inter_rater_dice"] == pytest.approx((2 / 9 + 1 + 1) / 3)
    assert st["inter_rater_dice_cases"] == 3
    # non-empty masks only: A (r1, r2) -> 2/3, B (r1, r2) -> 1; E has none
    assert st["inter_rater_dice_nonempty"] == pytest.approx((2 / 3 + 1) / 2)
    assert st["inter_rater_dice_nonempty_cases"] == 2
    assert st["empty_masks"] == 3 and st["cases_all_empty"] == 1 and st["unlabeled_cases"] == 1
    assert st["image_shapes"] == {"distinct": {"(1, 4, 4)": 4, "(1, 5, 5)": 1}}
    assert st["spacing"] == {"distinct": {"(1.0, 1.0)": 4, "(0.5, 0.5)": 1}}
    assert st["channels"] == [1] and st["spatial_ndim"] == [2] and st["structures"] == ["nodule"]
    assert st["intensity"] == {"min": 0.0, "max": 20.0}
    assert st["rater_ids"] == ["r1", "r2", "r3"]


def test_info_table_and_limit(small, capsys):
    assert main(["data", "info", str(small), "--limit", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "cases                        2 (first 2 of 5)" in out
    assert "inter-rater Dice             0.6111 (over 2 cases with >= 2 valid raters)" in out  # (2/9 + 1) / 2
    assert "unlabeled cases              0" in out


def test_shape_summary_many_distinct():
    from clinloop.data import ListDataset

    ds = ListDataset([MultiRaterSample(np.zeros((1, 4 + i, 10 - i), np.float32), np.zeros((0, 4 + i, 10 - i)),
                                       case_id=str(i)) for i in range(10)])
    st = dataset_stats(ds, progress=False)
    assert st["image_shapes"] == {"n_distinct": 10, "min": [1, 4, 1], "max": [1, 13, 10]}
    assert st["inter_rater_dice"] is None and st["unlabeled_cases"] == 10


def test_convert_round_trip(small, tmp_path, capsys):
    dst = tmp_path / "conv"
    assert main(["data", "convert", str(small), str(dst), "--mask-format", "nii.gz", "-q"]) == 0
    assert "wrote 5 cases (canonical -> canonical)" in capsys.readouterr().out
    assert (dst / "A" / "rater_r1.nii.gz").exists() and not (dst / "B" / "rater_r3.nii.gz").exists()
    a, b = load_dataset(small), load_dataset(dst)
    for s, t in zip(a, b):
        np.testing.assert_array_equal(s.masks, t.masks)
        np.testing.assert_array_equal(s.rater_valid, t.rater_valid)
        np.testing.assert_array_equal(s.image, t.image)
    assert dataset_stats(a, progress=False) | {"path": None} == dataset_stats(b, progress=False) | {"path": None}


def test_convert_failures_write_nothing(small, tmp_path, capsys):
    # unknown layout
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    assert main(["data", "convert", str(tmp_path / "junk"), str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clinloop: error: ") and "junk: unknown layout" in err
    # a bad mask in the middle of the dataset: the whole conversion is abandoned
    np.save(small / "C" / "rater_zz.npy", np.full((5, 5), 3))
    (small / "dataset.json").unlink()  # so the stray rater is read
    assert main(["data", "convert", str(small), str(tmp_path / "o2")]) == 2
    assert "rater_zz.npy: mask is not binary: values 3" in capsys.readouterr().err
    # missing source
    assert main(["data", "info", str(tmp_path / "nope")]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    # 3-D data with PNG masks
    np.save(tmp_path / "vol.npy", np.zeros((3, 4, 4)))
    assert main(["data", "convert", str(tmp_path / "vol.npy"), str(tmp_path / "o3"), "--mask-format", "png"]) == 2
    assert "PNG masks are 2-D only" in capsys.readouterr().err
    # a 3-D volume as PNG images: the case is named, never the temporary folder
    assert main(["data", "convert", str(tmp_path / "vol.npy"), str(tmp_path / "o4"), "--image-format", "png"]) == 2
    assert capsys.readouterr().err == (f"clinloop: error: {tmp_path / 'o4'}: case 'vol' is a 3-D volume (3, 4, 4); "
                                       "png cannot hold 3-D volumes (use --image-format nii.gz or npy)\n")
    # a destination that cannot be made (its folder is a file) is named as given
    (tmp_path / "afile").write_text("x")
    assert main(["data", "convert", str(tmp_path / "vol.npy"), str(tmp_path / "afile" / "o5")]) == 2
    assert capsys.readouterr().err == (f"clinloop: error: cannot create the folder {tmp_path / 'afile' / 'o5'} "
                                       f"({tmp_path / 'afile'} is a file, not a folder)\n")
    (tmp_path / "afile").unlink()
    # existing destination
    assert main(["data", "convert", str(tmp_path / "vol.npy"), str(small)]) == 2
    assert "destination already exists" in capsys.readouterr().err
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["junk", "small", "vol.npy"]  # no o1/o2/o3, no temporary folders


def test_option_parsing_and_passing(tmp_path, capsys):
    assert parse_option("structure=cup") == ("structure", "cup")
    assert parse_option("volumes=true") == ("volumes", True)
    assert parse_option("volumes=No") == ("volumes", False)
    assert parse_option("task=1") == ("task", 1)
    assert parse_option("min-size=0.5") == ("min_size", 0.5)
    assert parse_option("x=none") == ("x", None)
    assert parse_option("name=a=b") == ("name", "a=b")
    with pytest.raises(ValueError, match="expected key=value"):
        parse_option("volumes")
    np.save(tmp_path / "rgb.npy", np.zeros((3, 4, 5)))
    assert main(["data", "info", str(tmp_path / "rgb.npy"), "--json", "-q", "--option", "channels_first=true"]) == 0
    assert json.loads(capsys.readouterr().out)["channels"] == [3]
    assert main(["data", "info", str(tmp_path / "rgb.npy"), "-o", "task=1"]) == 2
    assert "takes only channels_first" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "rgb.npy"), "--format", "nosuch"]) == 2
    assert "unknown format 'nosuch'" in capsys.readouterr().err
    from fixtures_datasets import make_qubiq  # an option value the reader cannot use is named with the option

    make_qubiq(tmp_path / "q", tasks=(1, 2))
    assert main(["data", "info", str(tmp_path / "q"), "-o", "task=abc"]) == 2
    assert capsys.readouterr().err == (f"clinloop: error: {tmp_path / 'q'}: option task='abc': not a task number; "
                                       "tasks found: 1, 2\n")
    assert main(["data", "info", str(tmp_path / "q"), "-q", "-o", "task=2.5"]) == 2
    assert "option task=2.5: not a task number" in capsys.readouterr().err


def test_an_option_the_reader_does_not_take_is_named(tmp_path, capsys):
    """Readers with fixed keywords (lidc: volumes) get the unknown option named, not a TypeError."""
    from fixtures_datasets import make_lidc_npz

    make_lidc_npz(tmp_path / "lidc.npz")
    assert main(["data", "info", str(tmp_path / "lidc.npz"), "-o", "foo=1", "-o", "volumes=true"]) == 2
    err = capsys.readouterr().err
    assert err == (f"clinloop: error: {tmp_path / 'lidc.npz'}: the lidc reader takes no option 'foo'; "
                   "its options: volumes\n")
    with pytest.raises(ValueError, match="the lidc reader takes no option 'foo', 'structure'; its options: volumes"):
        load_dataset(tmp_path / "lidc.npz", structure="cup", foo=1)
    assert len(load_dataset(tmp_path / "lidc.npz", volumes=True)) >= 1  # its own option still passes


def test_formats(capsys):
    assert main(["data", "formats"]) == 0
    out = capsys.readouterr().out
    assert "canonical" in out and "single" in out and "decathlon" in out and "brats" in out


def test_info_and_convert_decathlon_volumes(tmp_path, capsys):
    """A 2-channel 4-D Decathlon set: info with a label option, then a lossless
    conversion to the canonical layout (image.npy, masks as NIfTI, geometry in
    dataset.json)."""
    from fixtures_datasets import make_decathlon

    src = make_decathlon(tmp_path / "Task")
    assert main(["data", "info", str(src), "-o", "label=tumour", "--json", "-q"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["format"] == "decathlon" and st["name"] == "TinyTask" and st["n_cases"] == 2
    assert st["spatial_ndim"] == [3] and st["channels"] == [2] and st["structures"] == ["tumour"]
    assert st["image_shapes"] == {"distinct": {"(2, 4, 5, 6)": 2}} and st["spacing"] == {"distinct": {"(2.0, 0.75, 0.5)": 2}}
    # coded_volume: 0 at (c, x, y, z) = 0 of case 0; 1000 + 543 + 10000 at the far corner of case 1
    assert st["intensity"] == {"min": 0.0, "max": 11543.0} and st["raters_per_case"] == {"min": 1, "max": 1}
    dst = tmp_path / "canon"
    assert main(["data", "convert", str(src), str(dst), "-o", "label=1,2", "-q"]) == 0
    assert "wrote 2 cases (decathlon -> canonical)" in capsys.readouterr().out
    assert (dst / "case_001" / "image.npy").exists() and (dst / "case_001" / "rater_0.nii.gz").exists()
    for s, t in zip(load_dataset(src), load_dataset(dst)):
        np.testing.assert_array_equal(s.image, t.image)
        np.testing.assert_array_equal(s.masks, t.masks)
        np.testing.assert_array_equal(s.affine, t.affine)
        assert (s.spacing, s.structure, s.patient_id) == (t.spacing, t.structure, t.patient_id)
    assert main(["data", "info", str(src), "-o", "label=liver"]) == 2
    assert "label 'liver' is not a foreground label" in capsys.readouterr().err


def test_info_and_convert_brats(tmp_path, capsys):
    from fixtures_datasets import make_brats

    make_brats(tmp_path / "brats", naming="challenge")
    assert main(["data", "info", str(tmp_path / "brats")]) == 0
    out = capsys.readouterr().out
    assert "format                       brats" in out and "whole tumour" in out and "(1, 4, 5, 6) x2" in out
    dst = tmp_path / "canon"
    assert main(["data", "convert", str(tmp_path / "brats"), str(dst), "-q"]) == 0
    capsys.readouterr()
    a, b = load_dataset(tmp_path / "brats"), load_dataset(dst)
    assert b.patient_ids == a.patient_ids and (dst / "case_0" / "image.nii.gz").exists()
    for s, t in zip(a, b):
        np.testing.assert_array_equal(s.image, t.image)
        np.testing.assert_array_equal(s.masks, t.masks)
        np.testing.assert_allclose(s.affine, t.affine)


def test_info_real_riga_cup(shared_data, capsys):
    path = shared_data / "riga_binrushed2" / "riga_binrushed2_512crop.npz"
    assert main(["data", "info", str(path), "-o", "structure=cup", "--limit", "2", "--json", "-q"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["format"] == "riga" and st["n_cases"] == 2 and st["structures"] == ["cup"]
    assert st["raters_per_case"] == {"min": 6, "max": 6} and st["channels"] == [3]
    assert 0.3 < st["inter_rater_dice"] < 1.0


@pytest.mark.shared
def test_info_real_left_atrium(shared_data, capsys):
    if not (shared_data / "left_atrium").is_dir():
        pytest.skip("../shared/data/left_atrium is not present")
    assert main(["data", "info", str(shared_data / "left_atrium"), "--limit", "2", "--json", "-q"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["format"] == "decathlon" and st["name"] == "LeftAtrium2018" and st["n_cases_total"] == 30
    assert st["structures"] == ["left atrium"] and st["spacing"] == {"distinct": {"(0.625, 0.625, 0.625)": 2}}
    assert st["image_shapes"] == {"distinct": {"(1, 88, 140, 183)": 1, "(1, 88, 143, 199)": 1}}


def test_console_script(small):
    exe = Path(sys.executable).parent / "clinloop"
    if not exe.exists():
        pytest.skip(f"{exe} not installed")
    r = subprocess.run([str(exe), "data", "info", str(small), "--json", "--quiet"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_cases"] == 5
    r = subprocess.run([str(exe), "data", "info", str(small / "nope")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("clinloop: error: ") and "no such file" in r.stderr
