"""Property-based checks of genzoo's schedulers (issue 13, "nothing silently wrong").

Every example starts from valid arguments (including edge values: tiny and near-1 betas, long chains, extreme but
finite shifts, float64/bfloat16/float16 tensors, numpy integers) and, about half of the time, replaces one of them by a
bad one (nan, inf, negative, zero, huge, a bool, a string, None, a list, a tensor of the wrong dtype or shape). The
properties:

- every call either works or raises ``ValueError`` with a one-line message -- never another exception type;
- a bad constructor argument is refused by a message naming it;
- valid step and training-side inputs of moderate size are accepted;
- whatever is accepted gives finite tensors: betas, alpha_bar, timesteps, flow times, ``prev_sample``,
  ``pred_original_sample``, ``add_noise`` and ``training_target``.

The examples are derandomized, so CI is deterministic; the file runs in about half a minute on two CPU cores.
"""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import genzoo
from genzoo.schedulers import DiffusersFlowMatchAdapter
from genzoo.schedulers.scheduling_ddpm import BETA_SCHEDULES, DDPM_PREDICTION_TYPES, TIMESTEP_SPACINGS, VARIANCE_TYPES
from genzoo.schedulers.scheduling_flow_match import FLOW_PREDICTION_TYPES, TIME_SAMPLINGS

pytestmark = pytest.mark.slow

NAN, INF = float("nan"), float("inf")
FLOW_CLASSES = (genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler)


def fast(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


def works_or_value_error(call, must_name: str | None = None, must_work: bool = False):
    """``call()``'s result, or ``None`` if it raised a one-line ValueError (naming ``must_name`` if given); any other
    exception fails the test, and so does a ValueError when ``must_work``."""
    try:
        result = call()
    except ValueError as error:
        message = str(error)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"
        assert not must_work, f"valid input refused: {message}"
        if must_name is not None:
            assert must_name in message, f"the message does not name {must_name!r}: {message}"
        event("refused: " + " ".join(message.split()[:3]))  # --hypothesis-show-statistics lists what was hit
        return None
    event("accepted")
    return result


def assert_finite(name, value):
    assert value is not None, name
    assert bool(torch.isfinite(torch.as_tensor(value).float()).all()), f"{name} is not finite: {value}"


# ------------------------------------------------------------------------------------------------ bad values
NOT_A_NUMBER = st.sampled_from([None, "0.1", "abc", [0.1], (1,), {"a": 1}, b"1", 1j, object(), torch.tensor(0.1),
                                True, False, np.bool_(True)])
NON_FINITE = st.sampled_from([NAN, INF, -INF, np.float64(NAN), np.float32(INF), 10**400, -(10**400)])
BAD_FLAG = st.sampled_from([np.float64(1.0), 0, 1, "false", "True", "", None, 1.0, [True]])
BAD_COUNT = st.sampled_from([0, -1, -(10**30), 10**6 + 1, 10**30, 2**63, 5.0, 2.5, True, None, "10", NAN, INF, [5],
                             torch.tensor(5), np.float64(3.0)])


def bad_choice(allowed):
    return st.sampled_from(["", "other", allowed[0].upper(), allowed[0] + " ", None, 1, [allowed[0]],
                            np.array([1, 2]), torch.tensor([1.0])])


def bad_number(*outside):
    """A value that is not a finite real number, or one of ``outside`` (real numbers outside the allowed range)."""
    return st.one_of(NOT_A_NUMBER, NON_FINITE, st.sampled_from(outside) if outside else NON_FINITE)


@st.composite
def with_one_bad(draw, valid: dict, bad: dict, keep_all: tuple = ()):
    """Valid keyword arguments (each present or left to its default), then, half of the time, one of them replaced by
    a bad value. Returns ``(kwargs, name of the bad one or None)``."""
    kwargs = {name: draw(strategy) for name, strategy in valid.items() if name in keep_all or draw(st.booleans())}
    if not draw(st.booleans()):
        return kwargs, None
    name = draw(st.sampled_from(sorted(bad)))
    kwargs[name] = draw(bad[name])
    return kwargs, name


# ------------------------------------------------------------------------------------------------ tensors
def fake_output(sample, variance_type=None):
    """A moderate, finite model output for ``sample`` (with a valid second half for learned variances)."""
    out = torch.tanh(0.7 * sample.float() - 0.3)
    if variance_type == "learned":
        out = torch.cat([out, 1e-4 + 0.01 * torch.sigmoid(sample.float())], dim=1)
    elif variance_type == "learned_range":
        out = torch.cat([out, torch.tanh(sample.float())], dim=1)
    return out.to(sample.dtype)


GOOD_TENSORS = ("normal", "large", "float64", "bfloat16", "float16")
BAD_TENSORS = ("nan", "inf", "huge", "max", "int", "bool", "list", "numpy", "none", "wrong_shape", "empty", "0d")


def tensor_input(kind, shape, seed):
    """A step or training input of some ``kind``: a fine tensor (``GOOD_TENSORS``) or a bad one (``BAD_TENSORS``;
    ``huge`` and ``max`` are finite but overflow the arithmetic)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    with_bad = base.clone().flatten()
    with_bad[0] = NAN if kind == "nan" else -INF
    return {
        "normal": base,
        "large": base * 1e3,
        "float64": base.double(),
        "bfloat16": base.bfloat16(),
        "float16": base.half(),
        "nan": with_bad.reshape(shape),
        "inf": with_bad.reshape(shape),
        "huge": base * 1e30,
        "max": torch.full(shape, 3e38),
        "int": base.long(),
        "bool": base > 0,
        "list": base.tolist(),
        "numpy": base.numpy(),
        "none": None,
        "wrong_shape": torch.randn(*shape[:-1], shape[-1] + 1, generator=g),
        "empty": torch.zeros(0, *shape[1:]),
        "0d": torch.tensor(0.5),
    }[kind]


BAD_GENERATORS = st.sampled_from(["list_wrong", 3, "seed", torch.tensor(1), [None]])


def make_generator(kind, batch):
    return {
        "none": None,
        "gen": torch.Generator().manual_seed(0),
        "list1": [torch.Generator().manual_seed(0)],
        "list_batch": [torch.Generator().manual_seed(i) for i in range(batch)],
        "list_wrong": [torch.Generator().manual_seed(i) for i in range(batch + 2)],
    }.get(kind, kind) if isinstance(kind, str) else kind


def check_step_outputs(out, sample):
    assert out.prev_sample.shape == sample.shape  # (DDPM's dtype follows torch's promotion of mixed inputs)
    assert_finite("prev_sample", out.prev_sample)
    assert_finite("pred_original_sample", out.pred_original_sample)


# ------------------------------------------------------------------------------------------------ DDPM
BETA = st.one_of(st.floats(1e-6, 0.05), st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
                 st.sampled_from([5e-8, 1e-4, 0.02, 0.5, 0.999999]))
DDPM_VALID = dict(
    num_train_timesteps=st.one_of(st.integers(1, 1200), st.sampled_from([1, 2, 1000, np.int64(50)])),
    beta_start=BETA,
    beta_end=BETA,
    beta_schedule=st.sampled_from(BETA_SCHEDULES),
    variance_type=st.sampled_from(VARIANCE_TYPES),
    prediction_type=st.sampled_from(DDPM_PREDICTION_TYPES),
    timestep_spacing=st.sampled_from(TIMESTEP_SPACINGS),
    clip_sample=st.sampled_from([True, False, np.bool_(False)]),
    thresholding=st.booleans(),
    rescale_betas_zero_snr=st.booleans(),
    dynamic_thresholding_ratio=st.one_of(st.floats(0.0, 1.0, exclude_min=True), st.just(1.0)),
    clip_sample_range=st.one_of(st.floats(1e-3, 10.0), st.just(1e-30)),
    sample_max_value=st.floats(1e-3, 10.0),
    steps_offset=st.integers(0, 3),
)
DDPM_BAD = dict(
    num_train_timesteps=BAD_COUNT,
    beta_start=bad_number(0.0, 1.0, -0.1, 1.5, 0),
    beta_end=bad_number(0.0, 1.0, 2.0, -1e-9),
    beta_schedule=bad_choice(BETA_SCHEDULES),
    variance_type=bad_choice(VARIANCE_TYPES),
    prediction_type=bad_choice(DDPM_PREDICTION_TYPES),
    timestep_spacing=bad_choice(TIMESTEP_SPACINGS),
    clip_sample=BAD_FLAG,
    thresholding=BAD_FLAG,
    rescale_betas_zero_snr=BAD_FLAG,
    dynamic_thresholding_ratio=bad_number(0.0, 1.0001, -1.0),
    clip_sample_range=bad_number(0.0, -1.0),
    sample_max_value=bad_number(0.0, -2.0),
    steps_offset=st.sampled_from([-1, 1.0, 2.5, True, None, "1", NAN, -(10**30)]),
    trained_betas=st.sampled_from(["0.1", 0.1, [[0.1]], [0.1, NAN], [0.1, 0.0], [0.1, 1.0], [0.1, True], [0.1, None],
                                   [0.1, "a"], [0.1, [0.2, 0.3]], np.array(["a", "b"]), torch.tensor([0.1, 1j]),
                                   [0.1] * 3, []]),
)


@st.composite
def ddpm_kwargs(draw):
    kwargs, bad = draw(with_one_bad(DDPM_VALID, DDPM_BAD))
    if bad == "trained_betas" or (bad is None and draw(st.integers(0, 4)) == 0):
        if bad is None:  # one valid beta per timestep, as a list, tuple, array or tensor
            T = draw(st.integers(1, 30))
            betas = draw(st.lists(BETA, min_size=T, max_size=T))
            kwargs["trained_betas"] = draw(st.sampled_from([list, tuple, np.array, torch.tensor]))(betas)
        else:
            T = 2
        kwargs["num_train_timesteps"] = T
    return kwargs, bad


@fast(300)
@given(drawn=ddpm_kwargs())
def test_ddpm_constructor_works_or_refuses_and_an_accepted_config_steps_finitely(drawn):
    kwargs, bad = drawn
    must_name = bad if bad not in (None, "trained_betas") else None
    scheduler = works_or_value_error(lambda: genzoo.DDPMScheduler(**kwargs), must_name=must_name)
    if bad == "trained_betas" and kwargs["trained_betas"] is not None:
        assert scheduler is None
    if scheduler is None:
        return
    assert bad is None, f"{bad}={kwargs[bad]!r} was accepted"
    for name in ("betas", "alphas_cumprod", "timesteps"):
        assert_finite(name, getattr(scheduler, name))
    T = scheduler.config.num_train_timesteps
    variance_type = scheduler.config.variance_type
    sample = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(1))
    for t in sorted({0, 1 % T, T // 2, max(T - 2, 0), T - 1}):  # both ends of the chain, where divisions blow up
        out = scheduler.step(fake_output(sample, variance_type), t, sample, generator=torch.Generator().manual_seed(1))
        check_step_outputs(out, sample)
        timesteps = torch.full((2,), t)
        assert_finite("add_noise", scheduler.add_noise(sample, noise, timesteps))
        assert_finite("training_target", scheduler.training_target(sample, noise, timesteps))
    if works_or_value_error(lambda: scheduler.set_timesteps(min(T, 7)) or True):  # steps_offset may push it out
        assert_finite("timesteps", scheduler.timesteps)
        x = sample
        for t in scheduler.timesteps:
            out = scheduler.step(fake_output(x, variance_type), t, x, generator=torch.Generator().manual_seed(2))
            check_step_outputs(out, x)
            x = out.prev_sample


VALID_DDPM_CONFIGS = st.sampled_from([
    {},
    dict(num_train_timesteps=50, timestep_spacing="trailing", prediction_type="v_prediction"),
    dict(num_train_timesteps=40, timestep_spacing="linspace", beta_schedule="squaredcos_cap_v2", steps_offset=1),
    dict(num_train_timesteps=30, rescale_betas_zero_snr=True, prediction_type="sample", clip_sample=False),
    dict(num_train_timesteps=30, thresholding=True, variance_type="learned_range"),
    dict(num_train_timesteps=30, variance_type="learned", beta_schedule="sigmoid", steps_offset=2),
])


@st.composite
def ddpm_set_timesteps_args(draw, T):
    if draw(st.booleans()):
        valid = dict(num_inference_steps=st.one_of(st.integers(1, T), st.just(np.int64(min(T, 5)))))
    else:
        grid = st.lists(st.integers(0, T - 1), min_size=1, max_size=8, unique=True).map(lambda g: sorted(g)[::-1])
        valid = dict(timesteps=st.one_of(grid, grid.map(np.array), grid.map(torch.tensor), grid.map(tuple)))
    valid["device"] = st.sampled_from([None, "cpu", torch.device("cpu")])
    bad = dict(
        num_inference_steps=st.one_of(BAD_COUNT, st.just(T + 1)),
        timesteps=st.one_of(
            st.lists(st.integers(-3, T + 3), max_size=6),  # unsorted, repeated, out of range or empty
            st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
            st.sampled_from([5, "10, 5", [[10, 5]], [10, [5]], [True, False], [10**30, 5], [2.5, 1], {3: 1}, None])),
        device=st.sampled_from(["bogus", 3.5, True, [None], "cuda:x"]),
    )
    return draw(with_one_bad(valid, bad, keep_all=tuple(valid)))


@fast(200)
@given(config=VALID_DDPM_CONFIGS, data=st.data())
def test_ddpm_set_timesteps_works_or_refuses(config, data):
    scheduler = genzoo.DDPMScheduler(**config)
    kwargs, bad = data.draw(ddpm_set_timesteps_args(len(scheduler)))
    if works_or_value_error(lambda: scheduler.set_timesteps(**kwargs) or True):
        grid = scheduler.timesteps
        assert_finite("timesteps", grid)
        assert grid.ndim == 1 and len(grid) >= 1 and scheduler.num_inference_steps == len(grid)
        assert bool((grid.diff() < 0).all()) and 0 <= int(grid.min()) and int(grid.max()) < len(scheduler)
    elif bad is None:  # valid arguments are refused only when steps_offset pushes the grid out of the chain
        assert scheduler.config.steps_offset > 0 and scheduler.config.timestep_spacing == "leading"


@st.composite
def step_args(draw, grid, learned=False, off_grid=st.nothing()):
    valid = dict(
        model_output=st.sampled_from(GOOD_TENSORS),
        sample=st.just("same"),
        timestep=st.one_of(st.sampled_from(grid), st.sampled_from(grid).map(lambda t: torch.tensor(t))),
        generator=st.sampled_from(["none", "gen", "list1", "list_batch"]),
        shape=st.sampled_from([(2, 3), (2, 2, 3), (1, 2, 2, 2)] + ([] if learned else [(3,)])),
    )
    bad = dict(
        model_output=st.sampled_from(BAD_TENSORS),
        sample=st.sampled_from(BAD_TENSORS),
        timestep=st.one_of(st.floats(allow_nan=True, allow_infinity=True), off_grid,
                           st.sampled_from([True, None, "5", [5, 6], (), 10**30, torch.tensor([4, 5]),
                                            torch.tensor([]), torch.tensor(True), torch.tensor(4.5), 1j, -1])),
        generator=BAD_GENERATORS,
    )
    return draw(with_one_bad(valid, bad, keep_all=tuple(valid)))


def build_step_inputs(args, learned_type=None):
    shape, seed = args["shape"], 0
    dtype_kind = args["model_output"] if args["model_output"] in GOOD_TENSORS else "normal"
    sample = tensor_input(dtype_kind if args["sample"] == "same" else args["sample"], shape, seed)
    if args["model_output"] in GOOD_TENSORS:
        model_output = fake_output(tensor_input(dtype_kind, shape, seed + 1), learned_type)
    else:
        model_output = tensor_input(args["model_output"], shape, seed + 1)
    return model_output, sample, make_generator(args["generator"], shape[0])


@fast(300)
@given(config=VALID_DDPM_CONFIGS, set_grid=st.booleans(), data=st.data())
def test_ddpm_step_works_or_refuses(config, set_grid, data):
    scheduler = genzoo.DDPMScheduler(**config)
    T = len(scheduler)
    if set_grid:
        scheduler.set_timesteps(min(10, T))
    variance_type = scheduler.config.variance_type
    learned = variance_type.startswith("learned")
    grid = scheduler.timesteps.tolist() if set_grid else list(range(T))
    args, bad = data.draw(step_args(grid, learned, off_grid=st.sampled_from([T, T + 7, -2])))
    model_output, sample, generator = build_step_inputs(args, variance_type if learned else None)
    out = works_or_value_error(lambda: scheduler.step(model_output, args["timestep"], sample, generator=generator),
                               must_work=bad is None)
    if out is not None:
        check_step_outputs(out, sample)


def training_args(max_time, integer):
    """Valid training-side arguments (fractions of the time range, turned into timesteps by the test), or one bad."""
    fraction = st.floats(0.0, 1.0)
    valid = dict(data=st.sampled_from(GOOD_TENSORS), noise=st.just("same"),
                 timesteps=st.one_of(fraction.map(lambda f: [f]), st.lists(fraction, min_size=2, max_size=2)),
                 method=st.sampled_from(["add_noise", "training_target"]))
    bad = dict(
        data=st.sampled_from(BAD_TENSORS), noise=st.sampled_from(BAD_TENSORS),
        timesteps=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(lambda v: ("raw", v)),
            st.sampled_from([max_time * 1.5, -1.0, [0.1, 0.2, 0.3], [], [NAN, 1.0], [True, False], "3", None, 10**30,
                             [[1, 2], [3]]] + ([0.5, [1.5, 2.0]] if integer else [])).map(lambda v: ("raw", v))),
    )
    return with_one_bad(valid, bad, keep_all=tuple(valid))


def build_training_inputs(args, scheduler, max_time, integer):
    kind = args["data"] if args["data"] in GOOD_TENSORS else "normal"
    x = tensor_input(kind, (2, 3), 0)
    noise = tensor_input(kind if args["noise"] == "same" else args["noise"], (2, 3), 1)
    timesteps = args["timesteps"]
    if isinstance(timesteps, tuple):
        timesteps = timesteps[1]
        if isinstance(timesteps, list) and all(isinstance(v, float) for v in timesteps):
            timesteps = torch.tensor(timesteps)
    else:
        timesteps = torch.tensor(timesteps) * max_time
        timesteps = timesteps.round().long() if integer else timesteps
    return x, noise, timesteps


@fast(200)
@given(config=VALID_DDPM_CONFIGS, data=st.data())
def test_ddpm_training_side_works_or_refuses(config, data):
    scheduler = genzoo.DDPMScheduler(**config)
    T = len(scheduler)
    args, bad = data.draw(training_args(T - 1, integer=True))
    x, noise, timesteps = build_training_inputs(args, scheduler, T - 1, integer=True)
    method = getattr(scheduler, args["method"])
    out = works_or_value_error(lambda: method(x, noise, timesteps), must_work=bad is None)
    if out is not None:
        assert out.shape == x.shape
        assert_finite(args["method"], out)


# ------------------------------------------------------------------------------------------------ flow matching
FLOW_VALID = dict(
    num_train_timesteps=st.one_of(st.integers(1, 1200), st.sampled_from([1, 1000, np.int64(20)])),
    scale_timesteps=st.sampled_from([True, False, np.bool_(True)]),
    shift=st.one_of(st.floats(0.05, 20.0), st.sampled_from([1.0, 3.0, 1e-3, 1e3, 1e-300, 1e300, 1e-320])),
    time_sampling=st.sampled_from(TIME_SAMPLINGS),
    logit_mean=st.one_of(st.floats(-5, 5), st.sampled_from([1e30, -1e300])),
    logit_std=st.one_of(st.floats(1e-3, 5), st.sampled_from([1e-300, 1e300])),
    prediction_type=st.sampled_from(FLOW_PREDICTION_TYPES),
)
FLOW_BAD = dict(
    num_train_timesteps=BAD_COUNT,
    scale_timesteps=BAD_FLAG,
    shift=bad_number(0.0, -1.0, -1e-300),
    time_sampling=bad_choice(TIME_SAMPLINGS),
    logit_mean=bad_number(),
    logit_std=bad_number(0.0, -1.0),
    prediction_type=bad_choice(FLOW_PREDICTION_TYPES),
)


@fast(200)
@given(cls=st.sampled_from(FLOW_CLASSES), drawn=with_one_bad(FLOW_VALID, FLOW_BAD))
def test_flow_constructor_works_or_refuses_and_an_accepted_config_samples_finitely(cls, drawn):
    kwargs, bad = drawn
    scheduler = works_or_value_error(lambda: cls(**kwargs), must_name=bad)
    if scheduler is None:
        return
    assert bad is None, f"{bad}={kwargs[bad]!r} was accepted"
    assert_finite("times", scheduler.times)
    assert_finite("timesteps", scheduler.timesteps)
    t = scheduler.sample_timesteps(16, generator=torch.Generator().manual_seed(0))
    assert_finite("sample_timesteps", t)
    x, noise = torch.randn(16, 3), torch.randn(16, 3)
    assert_finite("add_noise", scheduler.add_noise(x, noise, t))
    assert_finite("training_target", scheduler.training_target(x, noise, t))
    if works_or_value_error(lambda: scheduler.set_timesteps(5) or True):  # an extreme shift can repeat grid times
        sample = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
        for timestep in scheduler.timesteps:
            out = scheduler.step(fake_output(sample), timestep, sample)
            check_step_outputs(out, sample)
            sample = out.prev_sample
    else:
        assert scheduler.config.shift != 1.0


VALID_FLOW_CONFIGS = st.sampled_from([
    {}, dict(shift=3.0), dict(scale_timesteps=False, prediction_type="sample"),
    dict(num_train_timesteps=20, shift=0.05, prediction_type="sample"),
])


@st.composite
def flow_set_timesteps_args(draw):
    if draw(st.booleans()):
        valid = dict(num_inference_steps=st.one_of(st.integers(1, 60), st.just(np.int64(4))))
    else:
        times = st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6, unique=True).map(sorted)
        times = st.one_of(times, times.map(lambda g: g + [1.0]), st.just([0.0, 1 - 1e-12]), times.map(np.array),
                          times.map(lambda g: torch.tensor(g, dtype=torch.float64)))
        valid = dict(timesteps=times)
    valid["device"] = st.sampled_from([None, "cpu"])
    bad = dict(
        num_inference_steps=BAD_COUNT,
        timesteps=st.one_of(
            st.lists(st.floats(-0.5, 1.5), max_size=5).filter(lambda g: not g or sorted(set(g)) != g or g[0] < 0 or
                                                               g[-1] > 1 or g == [1.0]),
            st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4).filter(
                lambda g: not all(math.isfinite(v) for v in g)),
            st.sampled_from([0.5, "0.1", [[0.1, 0.5]], [0.1, [0.5]], [True], [1.0], [], None, {0.1: 1}])),
        device=st.sampled_from(["bogus", 2.5, False]),
    )
    return draw(with_one_bad(valid, bad, keep_all=tuple(valid)))


@fast(150)
@given(cls=st.sampled_from(FLOW_CLASSES), config=VALID_FLOW_CONFIGS, drawn=flow_set_timesteps_args())
def test_flow_set_timesteps_works_or_refuses(cls, config, drawn):
    kwargs, bad = drawn
    scheduler = cls(**config)
    if works_or_value_error(lambda: scheduler.set_timesteps(**kwargs) or True, must_work=bad is None):
        assert bad is None or kwargs[bad] is None  # None for the argument not used is fine
        assert_finite("times", scheduler.times)
        assert_finite("timesteps", scheduler.timesteps)
        assert float(scheduler.times[-1]) == 1.0 and bool((scheduler.times.diff() >= 0).all())
        sample = torch.randn(2, 3)
        for timestep in scheduler.timesteps:  # a whole run on the grid: finite throughout
            out = scheduler.step(fake_output(sample), timestep, sample)
            check_step_outputs(out, sample)
            sample = out.prev_sample


@fast(300)
@given(cls=st.sampled_from(FLOW_CLASSES), config=VALID_FLOW_CONFIGS, calls=st.integers(1, 3), data=st.data())
def test_flow_step_works_or_refuses(cls, config, calls, data):
    scheduler = cls(**config)
    scheduler.set_timesteps(4)
    grid = scheduler.timesteps.tolist()
    off_grid = st.sampled_from([(grid[0] + grid[1]) / 2, scheduler.time_scale * 1.5, -1.0])
    args, bad = data.draw(step_args(grid[:1], off_grid=off_grid))
    model_output, sample, generator = build_step_inputs(args)
    for call in range(calls):  # a run: later calls take the next grid point
        timestep = args["timestep"] if call == 0 else scheduler.timesteps[call]
        out = works_or_value_error(lambda: scheduler.step(model_output, timestep, sample, generator=generator),
                                   must_work=bad is None)
        if out is None:
            return
        check_step_outputs(out, sample)
        sample, model_output = out.prev_sample, fake_output(out.prev_sample)


@fast(200)
@given(cls=st.sampled_from(FLOW_CLASSES), config=VALID_FLOW_CONFIGS, data=st.data())
def test_flow_training_side_works_or_refuses(cls, config, data):
    scheduler = cls(**config)
    args, bad = data.draw(training_args(scheduler.time_scale, integer=False))
    x, noise, timesteps = build_training_inputs(args, scheduler, scheduler.time_scale, integer=False)
    method = getattr(scheduler, args["method"])
    out = works_or_value_error(lambda: method(x, noise, timesteps), must_work=bad is None)
    if out is not None:
        assert out.shape == x.shape
        assert_finite(args["method"], out)


@fast(60)
@given(
    value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1000),
                    st.sampled_from([None, "1", True, [1.0], 10**30, torch.tensor([0.0, 500.0])])),
    direction=st.sampled_from(["genzoo_timestep", "diffusers_timestep", "convert_output"]),
)
def test_adapter_works_or_refuses(value, direction):
    adapter = DiffusersFlowMatchAdapter(genzoo.FlowMatchEulerScheduler())
    out = works_or_value_error(lambda: getattr(adapter, direction)(value))
    if out is not None:
        assert_finite(direction, out)


# ------------------------------------------------------------------------------------------------ the examples
# Each of these was accepted before the fix and gave NaN.


def test_beta_start_nan_is_refused():
    with pytest.raises(ValueError, match=r"^beta_start must be a number in \(0, 1\), got nan \(not finite\)\.$"):
        genzoo.DDPMScheduler(beta_start=NAN)


def test_beta_end_above_one_is_refused():
    with pytest.raises(ValueError, match=r"^beta_end must be a number in \(0, 1\), got 2\.0\.$"):
        genzoo.DDPMScheduler(beta_end=2.0)


@pytest.mark.parametrize("cls", [genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler])
def test_shift_inf_is_refused(cls):
    with pytest.raises(ValueError, match=r"^shift must be a positive number, got inf \(not finite\)\.$"):
        cls(shift=INF)


@pytest.mark.parametrize(
    "cls,key,value,message",
    [
        (genzoo.DDPMScheduler, "beta_end", 2.0, r"beta_end must be a number in \(0, 1\), got 2\.0\."),
        (genzoo.DDPMScheduler, "beta_start", NAN, r"beta_start must be a number in \(0, 1\), got nan"),
        (genzoo.FlowMatchEulerScheduler, "shift", INF, r"shift must be a positive number, got inf"),
    ],
)
def test_from_pretrained_refuses_a_bad_config_with_the_same_message(tmp_path, cls, key, value, message):
    cls().save_pretrained(tmp_path)
    path = tmp_path / "scheduler_config.json"
    config = json.loads(path.read_text())
    config[key] = value  # json writes nan/inf as NaN/Infinity, which Diffusers' loader reads back
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        cls.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=message):
        cls.from_config(config)


def test_diffusers_trailing_grid_bug_is_not_copied():
    """Diffusers' trailing spacing can give num_inference_steps + 1 timesteps, the last -1 (it then indexes
    alpha_bar[-1]); genzoo gives the first num_inference_steps of them."""
    scheduler = genzoo.DDPMScheduler(num_train_timesteps=999, timestep_spacing="trailing")
    scheduler.set_timesteps(13)
    assert len(scheduler.timesteps) == 13 and int(scheduler.timesteps.min()) >= 0


def test_non_finite_step_inputs_name_the_timestep():
    ddpm = genzoo.DDPMScheduler()
    x = torch.randn(2, 3)
    bad = x.clone()
    bad[0, 0] = NAN
    with pytest.raises(ValueError, match=r"DDPMScheduler\.step at timestep 500: model_output contains NaN or inf"):
        ddpm.step(bad, 500, x)
    with pytest.raises(ValueError, match=r"DDPMScheduler\.step at timestep 500: sample contains NaN or inf"):
        ddpm.step(x, 500, bad)
    # an inf model output would otherwise be clamped to a finite, wrong x_0 by clip_sample
    with pytest.raises(ValueError, match=r"model_output contains NaN or inf"):
        ddpm.step(torch.full_like(x, INF), 500, x)
    heun = genzoo.FlowMatchHeunScheduler()
    heun.set_timesteps(3)
    with pytest.raises(ValueError, match=r"FlowMatchHeunScheduler\.step at timestep 0: model_output contains NaN"):
        heun.step(bad, heun.timesteps[0], x)
    assert heun.step_index is None and heun.state_in_first_order  # the refused call changed nothing
    assert math.isfinite(float(heun.step(x, heun.timesteps[0], x).prev_sample.sum()))


def test_schedules_that_underflow_in_float32_are_refused():
    """Diffusers accepts these and returns NaN: alpha_bar reaches 0 (or stays 1) in float32, and step divides by it."""
    with pytest.raises(ValueError, match=r"alpha_bar_t .* underflows to 0 in float32 from t=\d+"):
        genzoo.DDPMScheduler(beta_start=0.5, beta_end=0.9)
    with pytest.raises(ValueError, match=r"beta_t=1e-10 at t=0 is too small for float32"):
        genzoo.DDPMScheduler(beta_start=1e-10)
    with pytest.raises(ValueError, match=r"beta_start=0\.02 is larger than beta_end=0\.0001"):
        genzoo.DDPMScheduler(beta_start=0.02, beta_end=0.0001)
