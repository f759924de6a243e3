"""Oxford-IIIT Pet rewritten in the layouts users bring, so that the generic mask-folder source can be checked against
the trimap reader and the literature's 2-class protocol can be run (docs/results/own_data.md):

    python studies/pets_as_mask_folders.py ../shared/data/oxford-iiit-pet OUT_DIR     # step 1 of studies/own_data.sh

Wall time: a few seconds (this script's estimate; not recorded on the page).

writes two mask folders, each ``images/`` (the photos, byte for byte) + ``masks/`` + ``classes.json``:

- ``OUT_DIR/palette``: the trimaps as palette PNGs whose indices are simseg's class ids (0 background, 1 pet,
  2 boundary), coloured as the pets' classes; trained on the same split lists, it must score exactly what the
  trimap source scores;
- ``OUT_DIR/binary``: pet (1) against background (0), the trimap's boundary band as 255 (ignored in training and
  scoring): the 2-class protocol most pet-segmentation papers report.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from simseg.data.label_set import IGNORE_INDEX, PETS
from simseg.data.pets import OxfordPetsSource

BINARY_CLASSES = {"title": "Oxford-IIIT Pet, pet vs background (boundary band ignored)",
                  "classes": [{"name": "background", "colour": [0, 0, 0], "value": 0},
                              {"name": "pet", "colour": [255, 153, 0], "value": 1}],
                  "ignore": [IGNORE_INDEX]}


def write_layouts(pets_root: Path, out: Path) -> dict[str, int]:
    """Both folders under ``out``; returns the number of pairs written to each."""
    source = OxfordPetsSource(pets_root)
    palette_classes = {"title": "Oxford-IIIT Pet trimaps as class ids",
                       "classes": [{"name": n, "colour": list(c), "value": i}
                                   for i, (n, c) in enumerate(zip(PETS.names, PETS.colours))]}
    for layout, classes in (("palette", palette_classes), ("binary", BINARY_CLASSES)):
        for folder in ("images", "masks"):
            (out / layout / folder).mkdir(parents=True, exist_ok=True)
        (out / layout / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    for index in tqdm(range(len(source)), desc="writing pets as mask folders", unit="pair"):
        name, image_file = source.names[index], source.image_files[index]
        _, ids = source.pair(index)  # (H, W) uint8: 0 background, 1 pet, 2 boundary
        for layout in ("palette", "binary"):
            shutil.copy2(image_file, out / layout / "images" / image_file.name)
        palette = Image.fromarray(ids, mode="P")
        palette.putpalette(PETS.palette())
        palette.save(out / "palette" / "masks" / f"{name}.png")
        binary = np.where(ids == 2, IGNORE_INDEX, ids).astype(np.uint8)  # the boundary band: no label
        Image.fromarray(binary, mode="L").save(out / "binary" / "masks" / f"{name}.png")
    return {"palette": len(source), "binary": len(source)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pets", type=Path, help="an Oxford-IIIT Pet folder (images/ + annotations/trimaps/)")
    parser.add_argument("out", type=Path, help="where the palette/ and binary/ folders go")
    args = parser.parse_args()
    counts = write_layouts(args.pets, args.out)
    print(f"wrote {counts['palette']:,} pairs into {args.out}/palette and {args.out}/binary")


if __name__ == "__main__":
    main()
