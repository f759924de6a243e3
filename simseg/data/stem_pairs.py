"""Pairing images with their masks by file stem, shared by the folder layouts (Oxford pets' ``images/`` +
``annotations/trimaps/``, a mask folder's ``images/`` + ``masks/``): the visible files of each folder by stem, and
one refusal, naming the first unpaired file and the counts, when some have no partner."""

from __future__ import annotations

from pathlib import Path

from simseg.errors import SimsegError


def files_by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """{stem: file} of the files with ``extensions`` (any case) directly in ``folder``; hidden files (``.*``,
    macOS ``._*`` included) are ignored, and two files sharing a stem are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.stem in found:
            raise SimsegError(f"{found[path.stem]} and {path.name} share the name {path.stem}: keep one")
        found[path.stem] = path
    return found


def refuse_unpaired(no_mask: list[Path], no_image: list[Path], where: Path, mask: str = "mask",
                    fix: str = "") -> None:
    """One line naming the first unpaired file and how many there are of each kind, unless every file has its
    partner. ``mask`` names the masks (``trimap``), ``fix`` adds a remedy before ``data.skip_unpaired``."""
    if not no_mask and not no_image:
        return
    first = f"{no_mask[0]} has no {mask}" if no_mask else f"{no_image[0]} has no image"
    conjunction = ", or" if fix else " or"
    raise SimsegError(f"{first} ({len(no_mask):,} images without a {mask} and {len(no_image):,} {mask}s without "
                      f"an image in {where}): add the missing files{fix}{conjunction} set data.skip_unpaired=true to "
                      f"skip them")
