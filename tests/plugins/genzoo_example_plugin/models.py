"""Plugin models: genzoo's MLPs with tiny defaults.

A subclass that changes defaults re-declares the parent's whole signature under its own ``@register_to_config``:
the parent's ``__init__`` records all of its arguments in the config, so a narrower signature would make
``from_pretrained`` warn about config keys the subclass does not take (and drop them).
"""

from diffusers.configuration_utils import register_to_config

from genzoo.models import MLPDenoiser, MLPGenerator


class TinyMLPDenoiser(MLPDenoiser):
    @register_to_config
    def __init__(
        self,
        sample_size: int = 2,
        hidden_dim: int = 16,
        num_layers: int = 1,
        time_embed_dim: int = 8,
        out_channels: int | None = None,
        num_class_embeds: int | None = None,
        layer_norm: bool = True,
        time_embed_scale: float = 1.0,
    ):
        super().__init__(
            sample_size=sample_size,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            time_embed_dim=time_embed_dim,
            out_channels=out_channels,
            num_class_embeds=num_class_embeds,
            layer_norm=layer_norm,
            time_embed_scale=time_embed_scale,
        )


class TinyMLPGenerator(MLPGenerator):
    @register_to_config
    def __init__(self, sample_size: int = 2, latent_dim: int = 4, hidden_dim: int = 16, num_layers: int = 1):
        super().__init__(sample_size=sample_size, latent_dim=latent_dim, hidden_dim=hidden_dim, num_layers=num_layers)
