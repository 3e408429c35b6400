"""Property-based checks of the trainer's options: whatever a recipe (``--config``) or a command line holds, parsing
either gives a run's recipe whose values all pass their checks, or raises a :class:`RecipeError` with a one-line
message naming the option -- never another exception, never a value the command line would have refused."""

import dataclasses
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genzoo import registry
from genzoo.training import RecipeError, TrainerConfig, parse_args
from genzoo.config import finite_float
from genzoo.training.arguments import build_parser, recipe_of
from helpers import registered_methods

pytestmark = pytest.mark.slow

METHODS = sorted(registered_methods())
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def option_names(method: str) -> list[str]:
    return sorted(a.dest for a in build_parser(method)._actions if a.dest != "help")


def values():
    """Any value a YAML recipe can hold, weighted towards the edges of numbers."""
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-10, max_value=10), st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, -0.0, 1e-12, 1e39]),
        st.text(max_size=12), st.sampled_from(["linear", "cosine", "euler", "bogus", "moons", "true", "1e-4", ""]),
    )
    return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2))


def one_line(exc: BaseException) -> bool:
    return "\n" not in str(exc).strip()


def assert_every_typed_value_checked(args, method):
    """What parsing returned passes the typed checks of the trainer and of the method (again), so nothing that the
    command line would refuse got through a recipe."""
    TrainerConfig.from_mapping(args)
    registry.get("method", method).Config.from_mapping(args)
    for value in recipe_of(args).values():
        if isinstance(value, float):
            assert math.isfinite(value)
    yaml.safe_dump(recipe_of(args))  # the recipe a run writes can be written
    for action in build_parser(method)._actions:  # plain argparse options: the type the command line gives them
        value = getattr(args, action.dest, None)
        if value is not None and action.type in (int, finite_float):
            assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif value is not None and action.type is None and action.nargs != 0:
            assert isinstance(value, str), (action.dest, value)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(data=st.data())
def test_any_recipe_parses_or_is_refused_in_one_line(method, data, tmp_path_factory, example_plugins):
    names = option_names(method)
    recipe = data.draw(st.dictionaries(st.sampled_from(names + ["not_an_option"]), values(), max_size=4))
    recipe["method"] = method
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    try:
        args = parse_args(["--config", str(path)])
    except RecipeError as exc:
        assert one_line(exc), str(exc)
        return
    assert "not_an_option" not in recipe
    assert_every_typed_value_checked(args, method)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(data=st.data())
def test_any_command_line_parses_or_is_refused_in_one_line(method, data, example_plugins):
    names = option_names(method)
    argv = ["--method", method]
    for _ in range(data.draw(st.integers(0, 3))):
        name = data.draw(st.sampled_from(names))
        text = data.draw(st.one_of(st.text(max_size=8), st.sampled_from(["nan", "inf", "-1", "0", "1", "1e39"])))
        argv += [f"--{name}", text] if not text.startswith("-") else [f"--{name}={text}"]
    try:
        args = parse_args(argv)
    except RecipeError as exc:
        assert one_line(exc), str(exc)
        return
    assert_every_typed_value_checked(args, method)


def test_every_typed_option_refuses_nan_and_infinity():
    """The bug class the properties found first: ``nan`` passed every range check (``nan < 0`` is false)."""
    floats = [f.name for f in dataclasses.fields(TrainerConfig) if f.type in ("float", "float | None")]
    assert "learning_rate" in floats
    for name in floats:
        for text in ("nan", "inf", "-inf"):
            with pytest.raises(RecipeError, match=f"--{name}.*finite number, got"):
                parse_args([f"--{name}={text}"])


@pytest.mark.parametrize("key,value,message", [
    ("resolution", [8], "resolution must be an integer, got \\[8\\]"),
    ("num_channels", "three", "num_channels must be an integer, got 'three'"),
    ("max_bad_images_fraction", float("nan"), "max_bad_images_fraction must be a finite number"),
    ("center_crop", "yes", "center_crop must be true or false, got 'yes'"),
    ("dataset", 5, "dataset must be a string, got 5"),
])
def test_data_options_in_a_recipe_get_the_command_lines_checks(key, value, message, tmp_path):
    """The data options are plain argparse options: argparse never checks a default, so before this check a recipe
    could hand the data loader a list for --resolution or a NaN fraction."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({key: value}))
    with pytest.raises(RecipeError, match=f"--config {path}: {message}"):
        parse_args(["--config", str(path)])
