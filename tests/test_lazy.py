"""``import genzoo`` and ``import genzoo.demo`` are light (genzoo.lazy): every public name is still there, imported on
first use, and a fresh process that only imports them has not imported torch, Diffusers or Gradio."""

import subprocess
import sys

import pytest

import genzoo
import genzoo.demo
from genzoo.lazy import lazy_attributes


@pytest.mark.parametrize("package", [genzoo, genzoo.demo], ids=lambda p: p.__name__)
def test_every_public_name_resolves_and_is_listed(package):
    for name in package.__all__:
        assert getattr(package, name) is not None, name
        assert name in dir(package)
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'NoSuchName'"):
        package.NoSuchName  # noqa: B018


def test_public_names_are_the_classes_of_their_modules():
    from genzoo.pipelines import DDPMPipeline
    from genzoo.schedulers.scheduling_flow_match import FlowMatchEulerScheduler

    assert genzoo.DDPMPipeline is DDPMPipeline and genzoo.FlowMatchEulerScheduler is FlowMatchEulerScheduler
    assert genzoo.pipelines.load_pipeline is genzoo.load_pipeline  # a subpackage too, after a bare `import genzoo`


def test_lazy_attributes_imports_once_and_keeps_the_value(monkeypatch):
    module = type(sys)("lazy_probe")
    monkeypatch.setitem(sys.modules, "lazy_probe", module)
    module.__getattr__, module.__dir__ = lazy_attributes("lazy_probe", {"dumps": "json"})
    assert module.dumps is __import__("json").dumps and "dumps" in vars(module)  # kept: no second lookup
    assert "dumps" in dir(module)


@pytest.mark.subprocess
def test_importing_genzoo_and_its_demo_imports_no_torch():
    code = ("import sys, genzoo, genzoo.demo, genzoo.registry; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'gradio') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"
