"""Each refusal of a user's own data reaches the user of ``simseg segment`` as one line on stderr, ``simseg: error:``
and the file and the key to set, with exit status 2, before anything trains (the sources' messages themselves are
checked in tests/data/test_mask_formats.py and test_mask_folder.py; here, what the command line prints).

Every case is a 4-image synthetic set written by ``simseg data synthetic``'s writer, then damaged one way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simseg.cli import main
from simseg.data.synthetic_export import write_synthetic

TINY = ["model.depth=2", "model.img_size=32", "data.test_size=1", "data.num_workers=0", "train.epochs=1",
        "log.progress=false"]


def refusal(data: Path, capsys, *overrides: str) -> str:
    """The one line ``simseg segment data.source=DATA OVERRIDES`` prints before it exits with status 2."""
    out = data.parent / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["segment", f"data.source={data}", f"output_dir={out}", *TINY, *overrides])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simseg: error: "), captured.err
    assert not (out / "model.safetensors").exists() and not (out / "metrics.jsonl").exists()
    return lines[0]


def written(tmp_path: Path, layout: str) -> Path:
    return write_synthetic(tmp_path / layout, layout, count=4, size=32)


def test_binary_masks_without_a_label_map(tmp_path, capsys):
    data = written(tmp_path, "binary")
    line = refusal(data, capsys)
    assert f"mask {data / 'masks' / 'synthetic_00000_mask.png'} holds only 0 and 255" in line
    assert "set data.label_map=0:0,255:1" in line


def test_jpeg_masks_without_a_threshold(tmp_path, capsys):
    data = written(tmp_path, "binary")
    for png in sorted((data / "masks").iterdir()):
        Image.open(png).save(png.with_suffix(".jpg"), quality=75)
        png.unlink()
    jpeg = data / "masks" / "synthetic_00000_mask.jpg"
    for overrides in ((), ("data.label_map=0:0,255:1",)):  # the map alone does not settle the in-between values
        line = refusal(data, capsys, *overrides)
        assert f"mask {jpeg} is a JPEG" in line and "set data.mask_threshold=128" in line


def test_a_colour_the_class_file_does_not_have(tmp_path, capsys):
    data = written(tmp_path, "colour")
    mask = data / "masks" / "synthetic_00002.png"
    pixels = np.array(Image.open(mask))
    pixels[3, 4] = (1, 2, 3)
    Image.fromarray(pixels).save(mask)
    line = refusal(data, capsys)
    assert f"mask {mask} holds colour #010203" in line and "class file" in line


def test_a_mask_of_another_size_than_its_image(tmp_path, capsys):
    data = written(tmp_path, "mask-folder")
    mask = data / "masks" / "synthetic_00001.png"
    Image.open(mask).resize((30, 32)).save(mask)
    assert f"mask {mask} is 30x32 but its image is 32x32" in refusal(data, capsys)


def test_a_mask_without_its_image(tmp_path, capsys):
    data = written(tmp_path, "mask-folder")
    (data / "images" / "synthetic_00003.png").unlink()
    line = refusal(data, capsys)
    assert f"{data / 'masks' / 'synthetic_00003.png'} has no image" in line and "data.skip_unpaired=true" in line


def test_an_unknown_data_key_suggests_the_known_one(tmp_path, capsys):
    line = refusal(written(tmp_path, "binary"), capsys, "data.labl_map=0:0,255:1")
    assert line == "simseg: error: unknown config key 'data.labl_map' (did you mean 'data.label_map'?)"
