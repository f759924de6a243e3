"""Models: nn.Modules and pure tensor functions (the ViT encoder, the pretraining methods SimMIM and MAE,
segmentation and classification models, masking, patchify). The bottom layer above the ground floor: nothing here
imports the config."""
