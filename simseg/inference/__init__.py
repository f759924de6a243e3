"""Inference: a finished segmentation run rebuilt from its folder, the :class:`Segmenter` API on PyTorch or ONNX
Runtime, label maps and overlays as files, ``simseg predict`` over files and folders, the ONNX export with its
verification, and the model card."""
