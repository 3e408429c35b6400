"""Every registered scheduler -- genzoo's own and installed plugins' (here the example plugin's ShiftedFlowScheduler) --
passes the scheduler contract of genzoo.testing, and the contract itself catches what it claims to."""

import ast
import importlib
import inspect
import pkgutil

import diffusers
import pytest
import torch
from diffusers.configuration_utils import register_to_config

import genzoo
import genzoo.testing
from genzoo import registry
from genzoo.testing import SCHEDULER_CHECKS, check_scheduler, compatible_classes


def registered_schedulers():
    """(name, class) of every registered scheduler; a registered scheduler that does not import is a failure."""
    return [(entry.name, entry.load()) for entry in registry.entries("scheduler")]


@pytest.mark.parametrize("check_name", list(SCHEDULER_CHECKS))
def test_every_registered_scheduler_passes(check_name, example_plugins):
    schedulers = registered_schedulers()
    assert "ShiftedFlowScheduler" in dict(schedulers), "the example plugin's scheduler should be registered"
    failures = []
    for name, cls in schedulers:
        try:
            SCHEDULER_CHECKS[check_name](cls)
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)


def test_compatible_classes_come_from_diffusers_and_the_registry(example_plugins):
    from genzoo_example_plugin import ShiftedFlowScheduler

    euler_compatibles = set(compatible_classes(genzoo.FlowMatchEulerScheduler))
    assert {genzoo.FlowMatchHeunScheduler, ShiftedFlowScheduler} <= euler_compatibles
    assert genzoo.FlowMatchEulerScheduler in compatible_classes(ShiftedFlowScheduler)
    ddpm_compatibles = compatible_classes(genzoo.DDPMScheduler)
    assert {diffusers.DDPMScheduler, diffusers.DDIMScheduler} <= set(ddpm_compatibles)
    assert not any(cls.__module__.startswith("genzoo") for cls in ddpm_compatibles)


def test_configured_schedulers_pass(example_plugins):
    """The checks take constructor arguments too (here: non-default paths and grids)."""
    check_scheduler(
        genzoo.DDPMScheduler,
        config=dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", timestep_spacing="trailing"),
    )
    check_scheduler(genzoo.DDPMScheduler, config=dict(prediction_type="sample", num_train_timesteps=50),
                    checks=[n for n in SCHEDULER_CHECKS if n != "from_config_compatible"])
    check_scheduler(
        genzoo.FlowMatchHeunScheduler, config=dict(prediction_type="sample", scale_timesteps=False, shift=2.0)
    )


# ------------------------------------------------------------------------------ the contract has teeth
class GlobalNoiseDDPM(genzoo.DDPMScheduler):
    """Ignores the generator it is given."""

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        return super().step(model_output, timestep, sample, generator=None, return_dict=return_dict)


class NarrowSignatureFlow(genzoo.FlowMatchEulerScheduler):
    """Changes a default without re-declaring the parent's whole signature."""

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, shift: float = 2.0):
        super().__init__(num_train_timesteps=num_train_timesteps, shift=shift)


class UncheckedStepsFlow(genzoo.FlowMatchEulerScheduler):
    """Quietly replaces a bad number of steps."""

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        if timesteps is None and not (isinstance(num_inference_steps, int) and num_inference_steps > 0):
            num_inference_steps = 4
        super().set_timesteps(num_inference_steps, device=device, timesteps=timesteps)


class Float32OutFlow(genzoo.FlowMatchEulerScheduler):
    """Returns float32 whatever the sample's dtype."""

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        out = super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)
        if return_dict:
            out.prev_sample = out.prev_sample.float()
        return out


class WrongTargetDDPM(genzoo.DDPMScheduler):
    """Trains on a target its own step does not invert."""

    def training_target(self, original_samples, noise, timesteps):
        return 1.1 * super().training_target(original_samples, noise, timesteps)


class NoInitialGridFlow(genzoo.FlowMatchEulerScheduler):
    """Needs set_timesteps before it can step (what genzoo's flow schedulers did before)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.timesteps = None


@pytest.mark.parametrize(
    "cls,failing",
    [
        (GlobalNoiseDDPM, {"determinism", "config_round_trip", "step_shapes_and_dtypes"}),
        (NarrowSignatureFlow, {"config_round_trip"}),
        (UncheckedStepsFlow, {"set_timesteps_validation"}),
        (Float32OutFlow, {"step_shapes_and_dtypes"}),
        (WrongTargetDDPM, {"training_side"}),
        (NoInitialGridFlow, {"interface", "step_after_init"}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_the_contract_catches_broken_schedulers(cls, failing):
    with pytest.raises(AssertionError) as raised:
        check_scheduler(cls, checks=sorted(failing))
    message = str(raised.value)
    assert message.startswith(f"{cls.__name__} fails the genzoo scheduler contract")
    failure_lines = [line for line in message.splitlines()[1:] if line.startswith("  ") and ":" in line]
    reported = {line.split(":")[0].strip() for line in failure_lines}
    assert reported == failing, message


def test_unexpected_errors_are_reported_as_assertion_errors():
    class Crashes(genzoo.FlowMatchEulerScheduler):
        def step(self, *args, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(AssertionError, match=r"Crashes: step_after_init raised RuntimeError: boom"):
        SCHEDULER_CHECKS["step_after_init"](Crashes)


def test_check_scheduler_refuses_unknown_check_names():
    with pytest.raises(ValueError, match=r"Unknown scheduler checks \['speed'\]; allowed: interface"):
        check_scheduler(genzoo.FlowMatchEulerScheduler, checks=["speed"])


def test_the_contract_modules_do_not_import_pytest():
    """Plugin authors import genzoo.testing from any test runner; genzoo itself never needs pytest at run time."""
    modules = [genzoo.testing, *(importlib.import_module(f"genzoo.testing.{m.name}")
                                 for m in pkgutil.iter_modules(genzoo.testing.__path__))]
    assert {"genzoo.testing.methods", "genzoo.testing.pipelines", "genzoo.testing.schedulers"} <= {
        m.__name__ for m in modules}
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name and name.partition(".")[0] == "pytest"}, module.__name__


def test_checks_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    SCHEDULER_CHECKS["determinism"](genzoo.DDPMScheduler)
    assert torch.equal(torch.random.get_rng_state(), state)
