"""The plugin contract: what every genzoo scheduler, pipeline and training method must do, as plain check functions.

genzoo runs these checks over everything registered (its own and installed plugins'); a plugin author runs them over
their own classes from their own test suite, with no code to copy and no pytest needed::

    from genzoo.testing import check_method, check_pipeline, check_scheduler

    check_scheduler(MyScheduler)         # every check; one AssertionError listing all that failed
    check_pipeline(lambda: MyPipeline(unet=MyTinyModel(), scheduler=MyScheduler()))
    check_method("my-method")            # the registered --method name, or the registered Method subclass

    @pytest.mark.parametrize("name", sorted(SCHEDULER_CHECKS))
    def test_scheduler_contract(name):   # or one pytest test per check (METHOD_CHECKS, PIPELINE_CHECKS alike)
        SCHEDULER_CHECKS[name](MyScheduler)

Everything runs on the CPU with tiny sizes; what is written goes into temporary folders (``output_dir`` /
``tmp_dir`` choose where). Each check raises ``AssertionError`` naming the class (or method) and what went wrong.

**Schedulers** (:mod:`genzoo.testing.schedulers`, in the spirit of Diffusers' ``SchedulerCommonTest``;
``check(cls, config=None)``, ``config`` being constructor keyword arguments): ``interface``, ``config_round_trip``,
``from_config_compatible``, ``set_timesteps_validation``, ``step_shapes_and_dtypes``, ``determinism``,
``training_side``, ``step_after_init``, ``step_rejects_bad_input``.

**Pipelines** (:mod:`genzoo.testing.pipelines`; ``check(pipeline_or_factory, tmp_dir=None)``, a tiny pipeline or a
function that builds one): ``output_types`` (PIL, NumPy, torch and latent outputs agree, or are refused),
``determinism`` (seeded, per-sample generators), ``latents`` (the starting noise), ``save_load_round_trip`` (through
the class, ``genzoo.load_pipeline`` and Diffusers), ``dtypes`` (bfloat16), ``refusals`` (bad arguments name
themselves).

**Methods** (:mod:`genzoo.testing.methods`; ``check(method, dataset=None, output_dir=None)``, trained by genzoo's own
trainer for 6 steps with the method's ``smoke_test_options``): ``trains_saves_loads_samples`` (finite losses,
checkpoints, and a saved pipeline that loads, samples and evaluates) and ``resumes_exactly`` (stopped at step 3 and
resumed, the same final weights). The pieces these are built from -- :func:`tiny_args`, :func:`run_training`,
:func:`final_weights`, :func:`assert_same_weights`, :func:`assert_resumes_exactly` -- serve a plugin's further tests.
"""

from .methods import (
    METHOD_CHECKS,
    SMOKE_DATASETS,
    assert_resumes_exactly,
    assert_same_weights,
    check_method,
    final_weights,
    run_training,
    tiny_args,
)
from .pipelines import PIPELINE_CHECKS, check_pipeline
from .schedulers import SCHEDULER_CHECKS, check_scheduler, compatible_classes

__all__ = [
    "METHOD_CHECKS", "PIPELINE_CHECKS", "SCHEDULER_CHECKS", "SMOKE_DATASETS", "assert_resumes_exactly",
    "assert_same_weights", "check_method", "check_pipeline", "check_scheduler", "compatible_classes", "final_weights",
    "run_training", "tiny_args",
]
