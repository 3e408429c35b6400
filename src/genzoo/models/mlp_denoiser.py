"""Time-conditioned MLP denoiser for vector data, with ``UNet2DModel``'s call signature.

Used by DDPM (predicting noise, or noise + variance with ``out_channels = 2 * D``) and flow matching
(predicting a velocity): ``model(sample, timestep, class_labels=None, return_dict=True).sample``.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from ._common import check_positive_int

__all__ = ["MLPDenoiser", "MLPResidualBlock"]


class MLPResidualBlock(nn.Module):
    """``h + Linear(SiLU(Linear(norm(h)) + proj(SiLU(emb))))`` on ``(B, dim)`` features.

    Args:
        dim: feature width (also the width of the conditioning embedding ``emb``).
        layer_norm: apply ``LayerNorm`` to the block input (identity otherwise).
    """

    def __init__(self, dim: int, layer_norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(dim, dim)
        self.emb_proj = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``h``: ``(B, dim)``, ``emb``: ``(B, dim)`` -> ``(B, dim)``."""
        r = self.fc1(self.norm(h)) + self.emb_proj(self.act(emb))
        return h + self.fc2(self.act(r))


class MLPDenoiser(ModelMixin, ConfigMixin):
    """Time- (and optionally class-) conditioned residual MLP: ``(B, D)`` -> ``(B, out_channels)``.

    The timestep goes through a sinusoidal embedding (``diffusers.models.embeddings.Timesteps``, same settings
    as ``UNet2DModel``: ``flip_sin_to_cos=True, freq_shift=0``) and a ``TimestepEmbedding`` MLP to width
    ``hidden_dim``; a class embedding (``nn.Embedding``) is added to it when ``num_class_embeds`` is set.
    Each residual block adds a projection of that embedding.

    Note on the time scale: the sinusoidal embedding is built for timesteps in ``[0, ~1000]`` (what DDPM and
    Diffusers' flow-matching schedulers emit). If you feed continuous ``t`` in ``[0, 1]``, set
    ``time_embed_scale=1000`` so the embedding keeps its resolution.

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        hidden_dim (`int`, defaults to 128): Width of the residual trunk and of the conditioning embedding.
        num_layers (`int`, defaults to 3): Number of residual blocks.
        time_embed_dim (`int`, defaults to 64): Size of the sinusoidal embedding (must be even).
        out_channels (`int`, *optional*): Output size; ``None`` means ``D``. Use ``2 * D`` for learned variance.
        num_class_embeds (`int`, *optional*): Number of classes for class conditioning; ``class_labels`` is then
            required in ``forward``.
        layer_norm (`bool`, defaults to `True`): LayerNorm at the input of every residual block.
        time_embed_scale (`float`, defaults to 1.0): multiplies the timestep inside the sinusoidal embedding.
        class_embed_type (`str`, *optional*): ``"timestep"`` makes ``class_labels`` a second *time* (embedded like
            the timestep, by its own ``TimestepEmbedding``), as ``UNet2DModel(class_embed_type="timestep")`` does: a
            flow map's interval ``r - t`` (``genzoo.FlowMapPipeline``). ``None``: class labels, if any.
    """

    #: What it models: (B, D) vectors (genzoo.hub.data_kind reads it; Diffusers' models are "image").
    data_kind = "vector"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        time_embed_dim: int = 64,
        out_channels: int | None = None,
        num_class_embeds: int | None = None,
        layer_norm: bool = True,
        time_embed_scale: float = 1.0,
        class_embed_type: str | None = None,
    ):
        super().__init__()
        for name, value in [("sample_size", sample_size), ("hidden_dim", hidden_dim), ("num_layers", num_layers),
                            ("time_embed_dim", time_embed_dim)]:
            check_positive_int(name, value)
        if time_embed_dim % 2:
            raise ValueError(f"`time_embed_dim` must be even, got {time_embed_dim}.")
        if out_channels is not None:
            check_positive_int("out_channels", out_channels)
        if num_class_embeds is not None:
            check_positive_int("num_class_embeds", num_class_embeds)
        if class_embed_type not in (None, "timestep"):
            raise ValueError(f"`class_embed_type` must be None or 'timestep', got {class_embed_type!r}.")
        if class_embed_type is not None and num_class_embeds is not None:
            raise ValueError("`class_embed_type='timestep'` uses `class_labels` as a second time; it cannot be combined "
                             f"with `num_class_embeds` ({num_class_embeds}).")

        self.time_proj = Timesteps(time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0,
                                   scale=time_embed_scale)
        self.time_embedding = TimestepEmbedding(time_embed_dim, hidden_dim)
        if class_embed_type == "timestep":
            self.class_embedding = TimestepEmbedding(time_embed_dim, hidden_dim)
        else:
            self.class_embedding = nn.Embedding(num_class_embeds, hidden_dim) if num_class_embeds is not None else None
        self.proj_in = nn.Linear(sample_size, hidden_dim)
        self.blocks = nn.ModuleList([MLPResidualBlock(hidden_dim, layer_norm) for _ in range(num_layers)])
        self.norm_out = nn.LayerNorm(hidden_dim) if layer_norm else nn.Identity()
        self.act_out = nn.SiLU()
        self.proj_out = nn.Linear(hidden_dim, out_channels if out_channels is not None else sample_size)

    @staticmethod
    def _batch_timesteps(timestep, batch_size: int, device: torch.device) -> torch.Tensor:
        """Turn a python number, 0-d, (1,) or (B,) tensor into a ``(B,)`` tensor on ``device``.

        Unlike ``UNet2DModel`` (which casts python numbers to ``long``), a python ``float`` stays a float, so
        fractional times such as ``0.5`` are not truncated.
        """
        if not torch.is_tensor(timestep):
            dtype = torch.long if isinstance(timestep, int) else torch.float32
            timestep = torch.tensor([timestep], dtype=dtype)
        timestep = timestep.to(device).reshape(-1) if timestep.ndim == 0 else timestep.to(device)
        if timestep.ndim != 1 or timestep.shape[0] not in (1, batch_size):
            raise ValueError(
                f"`timestep` must be a number, a 0-d tensor or a tensor of shape (1,) or ({batch_size},), "
                f"got shape {tuple(timestep.shape)}."
            )
        return timestep.expand(batch_size)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Per-sample data shape ``(sample_size,)``: a pipeline starts from ``randn(B, *model.sample_shape)``."""
        return (self.config.sample_size,)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        """Predict noise / velocity / ``x0`` for a batch of vectors.

        Args:
            sample (`torch.Tensor`): noisy data ``(B, D)``.
            timestep (`torch.Tensor`, `float` or `int`): a number, a 0-d tensor, or a ``(B,)`` tensor of ints or
                floats; scalars are broadcast to the batch.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` integer labels; required iff ``num_class_embeds``.
            return_dict (`bool`): return a ``UNet2DOutput`` (default) or a 1-tuple.

        Returns:
            ``UNet2DOutput(sample=...)`` with ``sample`` of shape ``(B, out_channels)``; or ``(sample,)``.
        """
        if sample.ndim != 2 or sample.shape[1] != self.config.sample_size:
            raise ValueError(f"Expected samples of shape (B, {self.config.sample_size}), got {tuple(sample.shape)}.")
        batch = sample.shape[0]
        t = self._batch_timesteps(timestep, batch, sample.device)
        # Timesteps always returns float32; cast so the model also runs in bf16 / fp16.
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))

        if self.config.class_embed_type == "timestep":
            if class_labels is None:
                raise ValueError("This MLPDenoiser takes a second time (class_embed_type='timestep'): pass it as "
                                 "`class_labels`, a number or a tensor of shape (1,) or (B,).")
            second = self._batch_timesteps(class_labels, batch, sample.device)
            emb = emb + self.class_embedding(self.time_proj(second).to(sample.dtype))
        elif self.class_embedding is not None:
            if class_labels is None:
                raise ValueError(
                    f"This MLPDenoiser is class-conditional (num_class_embeds={self.config.num_class_embeds}): "
                    "pass `class_labels` of shape (B,)."
                )
            class_labels = torch.as_tensor(class_labels, device=sample.device).long().reshape(-1)
            if class_labels.shape[0] not in (1, batch):
                raise ValueError(f"`class_labels` must have shape ({batch},), got {tuple(class_labels.shape)}.")
            class_labels = class_labels.expand(batch)
            emb = emb + self.class_embedding(class_labels).to(emb.dtype)
        elif class_labels is not None:
            raise ValueError("`class_labels` were given but this MLPDenoiser has no `num_class_embeds`.")

        h = self.proj_in(sample)
        for block in self.blocks:
            h = block(h, emb)
        out = self.proj_out(self.act_out(self.norm_out(h)))
        if not return_dict:
            return (out,)
        return UNet2DOutput(sample=out)
