"""What ``simseg predict`` reads: image files, folders (recursively), globs and text files listing paths, each image
paired with the relative name its outputs take, so outputs keep the inputs' names and folders.

- a file: its name (``photos/cat.jpg`` -> ``cat``);
- a folder: the path below it (``photos/`` holding ``a/cat.jpg`` -> ``a/cat``);
- a glob: the path below its last folder without wildcards (``photos/**/*.jpg`` -> as the folder ``photos/``);
- a text file (any file whose extension is not an image's): one path a line, relative to the list's folder
  (blank lines and ``#`` comments skipped), each named by its path below that folder, or by its name if outside.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path, PurePath

from simseg.data.sources import IMAGE_EXTENSIONS
from simseg.errors import SimsegError

PHOTO_EXTENSIONS = (*IMAGE_EXTENSIONS, ".bmp", ".tif", ".tiff")
_WILDCARDS = set("*?[")


@dataclass(frozen=True)
class InputImage:
    path: Path
    stem: PurePath
    """The relative output name without extension: outputs are ``OUT/stem.png``, ``OUT/stem_overlay.jpg``..."""


def is_photo(path: Path) -> bool:
    return path.suffix.lower() in PHOTO_EXTENSIONS and not path.name.startswith(".")


def expand_inputs(sources: list[str]) -> list[InputImage]:
    """Every image the ``sources`` name, in order (a folder's and a glob's sorted), each once; one line for a source
    that does not exist, one that holds no image, or two images whose outputs would take the same name."""
    found: list[InputImage] = []
    for source in sources:
        images = _expand(source)
        if not images:
            raise SimsegError(f"{source} holds no image ({'/'.join(e.lstrip('.') for e in PHOTO_EXTENSIONS)}): give "
                              f"image files, folders of them, a glob or a text file listing paths")
        found += images
    return _without_repeats(found)


def _expand(source: str) -> list[InputImage]:
    path = Path(source).expanduser()
    if any(c in _WILDCARDS for c in source) and not path.exists():
        base = _folder_before_wildcards(source)
        matches = sorted(Path(p) for p in glob.glob(str(Path(source).expanduser()), recursive=True))
        return [InputImage(p, _stem(p.relative_to(base) if p.is_relative_to(base) else Path(p.name)))
                for p in matches if p.is_file() and is_photo(p)]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_photo(p)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        return [InputImage(p, _stem(p.relative_to(path))) for p in files]
    if path.is_file():
        return [InputImage(path, _stem(Path(path.name)))] if is_photo(path) else _listed(path)
    raise SimsegError(f"input {source} does not exist: give image files, folders, globs or a text file of paths")


def _listed(list_file: Path) -> list[InputImage]:
    try:
        lines = list_file.read_text().splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise SimsegError(f"{list_file} is neither an image ({', '.join(PHOTO_EXTENSIONS)}) nor a text file of "
                          f"paths ({type(err).__name__}): give images or a list of their paths") from None
    base = list_file.parent
    found = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise SimsegError(f"{list_file} line {number}: {entry} is not a file: fix the list or restore the image")
        found.append(InputImage(path, _stem(path.relative_to(base) if path.is_relative_to(base) else Path(path.name))))
    return found


def _folder_before_wildcards(pattern: str) -> Path:
    parts = Path(pattern).expanduser().parts
    fixed = next((i for i, part in enumerate(parts) if any(c in _WILDCARDS for c in part)), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


def _stem(relative: Path) -> PurePath:
    return PurePath(*relative.parts[:-1], relative.stem) if relative.parts else PurePath(relative.stem)


def _without_repeats(images: list[InputImage]) -> list[InputImage]:
    """Drop an image named twice (the same file through two sources); refuse two files that would share outputs."""
    by_stem: dict[PurePath, InputImage] = {}
    kept = []
    for image in images:
        other = by_stem.get(image.stem)
        if other is None:
            by_stem[image.stem] = image
            kept.append(image)
        elif other.path.resolve() != image.path.resolve():
            raise SimsegError(f"{other.path} and {image.path} would both write {image.stem}.png: rename one, or "
                              f"predict them into different --out folders")
    return kept
