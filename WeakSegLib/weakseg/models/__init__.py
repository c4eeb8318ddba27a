"""Networks used by the WeakSeg methods, and the one way to rebuild them from a model file."""

from weakseg.models.attention_unet import AttentionUNet2D
from weakseg.models.attentive_classifier import AttentiveClassifier, build_classifier
from weakseg.models.discriminator import MultiScaleDiscriminator, SqueezeMultiScaleDiscriminator
from weakseg.models.unet import UNet2D

ARCHITECTURES = {UNet2D.architecture: UNet2D, AttentionUNet2D.architecture: AttentionUNet2D}


def build_network(model_config: dict) -> UNet2D:
    """A network from the ``config`` dict it stored (files without an architecture are U-Nets).

    Raises:
        KeyError: an unknown architecture or a missing setting.
    """
    architecture = ARCHITECTURES[model_config.get("architecture", UNet2D.architecture)]
    return architecture(
        int(model_config["in_channels"]),
        int(model_config["num_classes"]),
        tuple(model_config["channels"]),
        float(model_config["dropout"]),
    )


__all__ = ["ARCHITECTURES", "AttentionUNet2D", "AttentiveClassifier", "build_classifier", "MultiScaleDiscriminator",
           "SqueezeMultiScaleDiscriminator", "UNet2D", "build_network"]
