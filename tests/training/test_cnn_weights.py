"""A CNN's encoder from ImageNet or a local weights file; a ViT export refused. The weights files are written here
(torchvision's ResNet-18 with random weights): nothing is downloaded."""

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from simseg.config.sections import ModelConfig
from simseg.errors import SimsegError
from simseg.models.registry import build_segmentation_model
from simseg.models.vit import build_encoder
from simseg.training import cnn_weights
from simseg.training.cnn_weights import load_cnn_init
from simseg.training.handoff import export_encoder


def unet(seed=0):
    torch.manual_seed(seed)
    return build_segmentation_model("unet_resnet18", 3, "ce")


@pytest.fixture(scope="module")
def resnet_state():
    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=1000).state_dict()  # torchvision's key names, with fc.*


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_local_resnet_file_fills_the_encoder_and_leaves_the_decoder_as_from_scratch(tmp_path, resnet_state,
                                                                                       suffix):
    path = tmp_path / f"resnet18{suffix}"
    torch.save(resnet_state, path) if suffix == ".pth" else save_file(resnet_state, str(path))
    model, scratch = unet(), unet()
    lineage = load_cnn_init(model, str(path), "unet_resnet18")
    encoder = model.encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in resnet_state.items() if not k.startswith("fc."))
    decoder = {k: v for k, v in model.state_dict().items() if not k.startswith("net.encoder.")}
    assert all(torch.equal(v, scratch.state_dict()[k]) for k, v in decoder.items())
    assert lineage["weights"] == str(path.resolve()) and len(lineage["weights_sha256"]) == 64


def test_wrong_weights_are_refused_in_one_line(tmp_path, resnet_state):
    vit_export = tmp_path / "encoder.safetensors"
    export_encoder(vit_export, build_encoder(ModelConfig(depth=1)), ModelConfig(depth=1))
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in resnet_state.items() if not k.startswith("layer4.")}, partial)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    for path, message in ((vit_export, "is a simseg ViT encoder export; unet_resnet18 has a CNN encoder"),
                          (partial, "does not fit the resnet18 encoder (missing ['layer4"),
                          (junk, "is not a readable torch weights file"),
                          (tmp_path / "nowhere.pth", "does not exist: give init=scratch, init=imagenet")):
        with pytest.raises(SimsegError) as err:
            load_cnn_init(unet(), str(path), "unet_resnet18")
        assert message in str(err.value) and "\n" not in str(err.value)


def test_imagenet_without_a_network_says_how_to_use_a_local_file(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):  # what the hub raises when it can neither reach the network nor find a cache
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub. Check your "
                                      "connection.\nMore text")

    import segmentation_models_pytorch.encoders as smp_encoders

    monkeypatch.setattr(smp_encoders, "get_encoder", offline)
    with pytest.raises(SimsegError) as err:
        load_cnn_init(unet(), "imagenet", "unet_resnet18")
    assert "could not be fetched (An error happened while trying to locate the file on the Hub)" in str(err.value)
    assert "pass init=/path/to/that/file" in str(err.value) and "\n" not in str(err.value)


def test_imagenet_weights_go_into_the_encoder(monkeypatch, resnet_state):
    """With weights at hand (the download replaced by a local encoder), init=imagenet fills the encoder."""
    import segmentation_models_pytorch.encoders as smp_encoders

    real = smp_encoders.get_encoder

    def cached(name, weights=None, **kwargs):
        encoder = real(name, weights=None, **kwargs)
        encoder.load_state_dict({k: v for k, v in resnet_state.items() if not k.startswith("fc.")})
        return encoder

    monkeypatch.setattr(smp_encoders, "get_encoder", cached)
    model = unet()
    assert load_cnn_init(model, "imagenet", "unet_resnet18")["init"] == "imagenet"
    assert torch.equal(model.encoder.conv1.weight, resnet_state["conv1.weight"])
    assert cnn_weights.CLASSIFIER_PREFIXES == ("fc.",)
