"""The entry-point registry: genzoo's own components, an example plugin package (tests/plugins), a broken one."""

import json

import pytest
import torch

import genzoo
import genzoo.schedulers.paths
from diffusers import SchedulerMixin
from genzoo import registry
from genzoo.schedulers.kinds import declared, registered_schedulers, solver_shorthands
from helpers import write_distribution


def exported(module, base) -> dict[str, type]:
    """The classes derived from ``base`` that ``module`` exports (its ``__all__``), by class name: what genzoo must
    register, so a new one that is not registered (or the reverse) fails the test below, with no list to keep."""
    found = {name: getattr(module, name) for name in getattr(module, "__all__", dir(module))}
    return {name: obj for name, obj in found.items()
            if isinstance(obj, type) and issubclass(obj, base) and obj is not base}


GENZOO_COMPONENTS = {
    "pipeline": {
        "DDPMPipeline": genzoo.DDPMPipeline,
        "FlowMapPipeline": genzoo.FlowMapPipeline,
        "FlowMatchingPipeline": genzoo.FlowMatchingPipeline,
        "GANPipeline": genzoo.GANPipeline,
        "VAEPipeline": genzoo.VAEPipeline,
    },
    "scheduler": exported(genzoo.schedulers, SchedulerMixin),
    "model": {
        "ConditionalAutoencoderKL": genzoo.ConditionalAutoencoderKL,
        "DCGANDiscriminator": genzoo.DCGANDiscriminator,
        "DCGANGenerator": genzoo.DCGANGenerator,
        "MLPDenoiser": genzoo.MLPDenoiser,
        "MLPDiscriminator": genzoo.MLPDiscriminator,
        "MLPGenerator": genzoo.MLPGenerator,
        "MLPVAE": genzoo.MLPVAE,
    },
}
PLUGIN_COMPONENTS = {
    ("pipeline", "ExampleFlowPipeline"): "genzoo_example_plugin.pipelines:ExampleFlowPipeline",
    ("scheduler", "ShiftedFlowScheduler"): "genzoo_example_plugin.schedulers:ShiftedFlowScheduler",
    ("model", "TinyMLPDenoiser"): "genzoo_example_plugin.models:TinyMLPDenoiser",
    ("model", "TinyMLPGenerator"): "genzoo_example_plugin.models:TinyMLPGenerator",
}


def samples(pipe, seed=0):
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=4, generator=torch.Generator().manual_seed(seed), num_inference_steps=3, output_type="np")
    return out.samples


# ------------------------------------------------------------------------------------------------ genzoo's own
@pytest.mark.parametrize("kind", sorted(GENZOO_COMPONENTS))
def test_genzoo_components_are_registered_with_their_package(kind):
    own = [e for e in registry.entries(kind) if e.package == "genzoo"]
    assert [e.name for e in own] == sorted(GENZOO_COMPONENTS[kind])
    assert {e.version for e in own} == {genzoo.__version__}
    for name, cls in GENZOO_COMPONENTS[kind].items():
        assert registry.get(kind, name) is cls
        assert registry.registered_name(cls) == name
        assert registry.find_component_class(name) is cls


def test_genzoo_schedulers_declare_what_they_step():
    """Each registered scheduler declares the model_kind of the pipelines it serves; genzoo's ODE solvers declare their
    --solver shorthand and every genzoo scheduler its menu label, each its own (so no name list is kept in sync)."""
    pipeline_kinds = {getattr(registry.get("pipeline", n), "model_kind", None) for n in registry.names("pipeline")}
    for name, cls in registered_schedulers().items():
        assert cls.model_kind in pipeline_kinds - {None}, name
    own = GENZOO_COMPONENTS["scheduler"]
    assert {name: cls.model_kind for name, cls in own.items()} == {
        "DDPMScheduler": "diffusion", "FlowMapEulerScheduler": "flow-map", "FlowMatchEulerScheduler": "flow",
        "FlowMatchHeunScheduler": "flow"}
    assert solver_shorthands() == {"euler": "FlowMatchEulerScheduler", "heun": "FlowMatchHeunScheduler"}
    labels = [(cls.model_kind, declared(cls, "solver_label")) for cls in own.values()]
    assert None not in {label for _, label in labels} and len(set(labels)) == len(labels)


def test_paths_are_registered_by_name():
    """genzoo's probability paths: every ProbabilityPath subclass of genzoo.schedulers.paths, registered once under
    the name the flow schedulers' ``path`` option and the trainer's ``--path`` take."""
    own = [e for e in registry.entries("path") if e.package == "genzoo"]
    assert [e.name for e in own] == ["cosine", "straight"]
    classes = {registry.get("path", e.name) for e in own}
    assert classes == set(exported(genzoo.schedulers.paths, genzoo.schedulers.ProbabilityPath).values())
    assert registry.get("path", "straight") is genzoo.schedulers.StraightPath


def test_methods_group_exists_and_kinds_are_checked():
    assert isinstance(registry.entries("method"), list)
    with pytest.raises(ValueError, match="allowed: pipeline, scheduler, model, method"):
        registry.entries("sampler")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError) as info:
        registry.get("scheduler", "EulerAncestralScheduler")
    message = info.value.args[0]
    assert "'EulerAncestralScheduler'" in message and "genzoo.schedulers" in message
    assert all(name in message for name in GENZOO_COMPONENTS["scheduler"])
    with pytest.raises(KeyError, match="GANPipeline.*MLPVAE"):
        registry.find_component_class("NoSuchThing")


def test_unregistered_class_has_no_name():
    class LocalScheduler(genzoo.FlowMatchEulerScheduler):
        pass

    assert registry.registered_name(LocalScheduler) is None


def test_plugins_are_not_seen_without_being_installed():
    assert not any(e.package.startswith("genzoo-") for e in registry.entries())


# ---------------------------------------------------------------------------------------------------- plugins
def test_example_plugin_is_registered(example_plugins):
    by_key = {(e.kind, e.name): e for e in registry.entries()}
    for key, target in PLUGIN_COMPONENTS.items():
        entry = by_key[key]
        assert (entry.target, entry.package, entry.version) == (target, "genzoo-example-plugin", "0.1.0")
        cls = registry.get(*key)
        assert f"{cls.__module__}:{cls.__qualname__}" == target
        assert registry.registered_name(cls) == key[1]
    assert issubclass(registry.get("pipeline", "ExampleFlowPipeline"), genzoo.FlowMatchingPipeline)
    assert "ExampleFlowPipeline" in registry.names("pipeline")


def test_plugin_pipeline_round_trips_through_load_pipeline(example_plugins, tmp_path):
    from genzoo_example_plugin import ExampleFlowPipeline, ShiftedFlowScheduler, TinyMLPDenoiser

    torch.manual_seed(0)
    pipe = ExampleFlowPipeline(unet=TinyMLPDenoiser(), scheduler=ShiftedFlowScheduler())
    pipe.save_pretrained(tmp_path)

    model_index = json.loads((tmp_path / "model_index.json").read_text())
    assert model_index["_class_name"] == ["genzoo_hub", "ExampleFlowPipeline"]
    assert model_index["unet"] == ["genzoo_hub", "TinyMLPDenoiser"]
    assert model_index["scheduler"] == ["genzoo_hub", "ShiftedFlowScheduler"]

    loaded = genzoo.load_pipeline(tmp_path)
    assert type(loaded) is ExampleFlowPipeline
    assert type(loaded.unet) is TinyMLPDenoiser and type(loaded.scheduler) is ShiftedFlowScheduler
    assert loaded.scheduler.config.shift == 3.0
    assert loaded.unet.config.hidden_dim == 16
    assert (samples(loaded) == samples(pipe)).all()


def test_plugin_model_in_a_genzoo_pipeline_round_trips(example_plugins, tmp_path):
    from genzoo_example_plugin import TinyMLPGenerator

    torch.manual_seed(0)
    pipe = genzoo.GANPipeline(generator=TinyMLPGenerator())
    pipe.save_pretrained(tmp_path)
    loaded = genzoo.load_pipeline(tmp_path)
    assert type(loaded) is genzoo.GANPipeline and type(loaded.generator) is TinyMLPGenerator
    assert (samples(loaded) == samples(pipe)).all()


def test_broken_plugin_is_reported_and_does_not_stop_the_others(example_plugins):
    (broken,) = [e for e in registry.entries("pipeline") if e.name == "BrokenPipeline"]
    assert (broken.package, broken.version, broken.error) == ("genzoo-broken-plugin", "0.2.0", None)

    with pytest.raises(ImportError) as info:
        registry.get("pipeline", "BrokenPipeline")
    message = str(info.value)
    assert "'BrokenPipeline'" in message and "genzoo-broken-plugin 0.2.0" in message
    assert "No module named 'genzoo_missing_dependency'" in message
    assert broken.error.startswith("ModuleNotFoundError")
    with pytest.raises(ImportError, match="genzoo-broken-plugin"):  # reported again, not retried into a traceback
        registry.get("pipeline", "BrokenPipeline")

    assert registry.get("pipeline", "ExampleFlowPipeline").__name__ == "ExampleFlowPipeline"
    assert registry.get("pipeline", "GANPipeline") is genzoo.GANPipeline
    assert registry.registered_name(genzoo.GANPipeline) == "GANPipeline"
    with pytest.raises(KeyError, match="BrokenPipeline.*ExampleFlowPipeline"):  # still listed as known
        registry.get("pipeline", "Nope")


def test_genzoo_pipelines_load_while_a_broken_plugin_is_installed(example_plugins, tmp_path):
    torch.manual_seed(0)
    pipe = genzoo.FlowMatchingPipeline(genzoo.MLPDenoiser(hidden_dim=16), genzoo.FlowMatchEulerScheduler())
    pipe.save_pretrained(tmp_path)
    assert (samples(genzoo.load_pipeline(tmp_path)) == samples(pipe)).all()


def test_one_name_from_two_packages_is_an_error(tmp_path, monkeypatch):
    """A plugin that declares a name genzoo already uses does not silently replace genzoo's class."""
    write_distribution(tmp_path, "genzoo-shadow", "1.0", "[genzoo.schedulers]\nDDPMScheduler = genzoo_shadow:DDPMScheduler\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    try:
        with pytest.raises(KeyError, match="more than one package: .*genzoo-shadow"):
            registry.get("scheduler", "DDPMScheduler")
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert registry.get("scheduler", "DDPMScheduler") is genzoo.DDPMScheduler


def test_plain_diffusers_loads_a_plugin_pipeline_with_trust_remote_code(example_plugins, tmp_path):
    """The genzoo_hub shim hands Diffusers the installed plugin's classes; it is only run when the user trusts it."""
    import diffusers
    from genzoo_example_plugin import ExampleFlowPipeline, ShiftedFlowScheduler, TinyMLPDenoiser

    torch.manual_seed(0)
    pipe = ExampleFlowPipeline(unet=TinyMLPDenoiser(), scheduler=ShiftedFlowScheduler())
    pipe.save_pretrained(tmp_path)
    loaded = diffusers.DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded) is ExampleFlowPipeline
    assert type(loaded.unet) is TinyMLPDenoiser and type(loaded.scheduler) is ShiftedFlowScheduler
    assert (samples(loaded) == samples(pipe)).all()
