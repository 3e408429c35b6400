"""A plugin scheduler: flow-matching Euler steps on an SD3-style shifted grid by default (more steps near noise).

Only the default of ``shift`` changes, but the whole signature is re-declared (see ``models.py`` for why)."""

from diffusers.configuration_utils import register_to_config

from genzoo.schedulers import FlowMatchEulerScheduler


class ShiftedFlowScheduler(FlowMatchEulerScheduler):
    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        scale_timesteps: bool = True,
        shift: float = 3.0,
        time_sampling: str = "uniform",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        prediction_type: str = "velocity",
        path: str = "straight",
    ):
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            scale_timesteps=scale_timesteps,
            shift=shift,
            time_sampling=time_sampling,
            logit_mean=logit_mean,
            logit_std=logit_std,
            prediction_type=prediction_type,
            path=path,
        )
