"""simseg: self-supervised (SimMIM, MAE) pretraining of small vision transformers for segmentation with scarce
labels.

``from simseg import Segmenter`` is the Python entry point to a trained model (:mod:`simseg.inference.segmenter`);
it is imported on first use, so ``import simseg`` stays light."""

__all__ = ["Segmenter"]


def __getattr__(name: str):
    if name == "Segmenter":
        from simseg.inference.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'simseg' has no attribute {name!r}")
