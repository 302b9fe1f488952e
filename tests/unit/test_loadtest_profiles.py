"""Load profiles: built-ins, files, validation messages and shapes."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from stack.errors import ProfileError
from stack.loadtest.profiles import BUILTIN_PROFILES, Shape, load_profile, misfits, parse_profile
from stack.settings import Settings

PROFILES_DIR = Path(__file__).parents[2] / "loadtests" / "profiles"


@pytest.mark.parametrize("name", sorted(BUILTIN_PROFILES))
def test_every_builtin_profile_is_valid(name):
    assert load_profile(name).name == name


def test_no_profile_means_the_mixed_one():
    assert load_profile(None).name == "mixed"


@pytest.mark.parametrize("path", sorted(PROFILES_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_profile_file_is_valid(path):
    assert load_profile(path).tasks


def test_a_toml_profile_is_read_with_its_file_name_as_name(tmp_path):
    path = tmp_path / "burst.toml"
    path.write_text(
        'user_weights = { celery = 1 }\n[[tasks]]\nname = "diagnostics.echo"\n'
        'priority = "critical"\nqueue = "default"\n[shape]\nkind = "spike"\n'
    )
    profile = load_profile(path)
    assert profile.name == "burst"
    assert profile.tasks[0].priority == "critical"
    assert profile.weight_of("http") == 0
    assert profile.shape.kind == "spike"


def test_a_json_profile_is_read(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "j", "tasks": [{"name": "diagnostics.sleep"}]}))
    assert load_profile(path).name == "j"


def test_an_unknown_profile_names_the_builtins():
    with pytest.raises(ProfileError, match=r"neither a built-in .*mixed.* nor an existing file"):
        load_profile("no-such-profile")


def test_an_invalid_profile_names_each_bad_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[tasks]]\nname = "x"\nqueue = "nowhere"\npriority = "urgent"\n')
    with pytest.raises(ProfileError) as error:
        load_profile(path)
    message = str(error.value)
    assert "tasks.0.queue" in message and "unknown queue 'nowhere'" in message
    assert "tasks.0.priority" in message


def test_a_profile_with_no_user_kind_is_refused(tmp_path):
    path = tmp_path / "none.toml"
    path.write_text('user_weights = { http = 0 }\n[[tasks]]\nname = "x"\n')
    with pytest.raises(ProfileError, match="at least one above 0"):
        load_profile(path)


def test_unreadable_toml_is_a_profile_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("tasks = [")
    with pytest.raises(ProfileError, match="cannot be read"):
        load_profile(path)


def test_tasks_are_picked_by_weight():
    profile = load_profile("diagnostics")
    rng = random.Random(7)
    counts = Counter(profile.pick(rng).name for _ in range(4000))
    weights = Counter()
    for mix in profile.tasks:
        weights[mix.name] += mix.weight
    share = counts["diagnostics.sleep"] / 4000
    assert share == pytest.approx(weights["diagnostics.sleep"] / sum(weights.values()), abs=0.03)


def test_a_constant_shape_runs_every_user_until_the_run_time():
    shape = Shape()
    assert shape.users_at(0, 20, 10) == 10
    assert shape.users_at(19.9, 20, 10) == 10
    assert shape.users_at(20, 20, 10) is None


def test_a_step_shape_rises_in_equal_steps_to_all_users():
    shape = Shape(kind="step", steps=4)
    assert [shape.users_at(t, 20, 20) for t in (0, 5, 10, 15, 19.9)] == [5, 10, 15, 20, 20]


def test_a_spike_shape_runs_a_base_with_all_users_in_the_spike():
    shape = Shape(kind="spike", base_fraction=0.25, spike_start=0.4, spike_length=0.2)
    assert [shape.users_at(t, 10, 20) for t in (0, 3.9, 4, 5.9, 6, 9)] == [5, 5, 20, 20, 5, 5]


def test_a_shape_never_drops_to_zero_users():
    assert Shape(kind="spike", base_fraction=0.01).users_at(0, 10, 3) == 1


class FakeTask:
    def __init__(self, run):
        self.run = run


def test_a_profile_that_fits_its_tasks_has_no_misfits():
    profile = parse_profile(
        {"name": "p", "tasks": [{"name": "t", "args": [1], "kwargs": {"b": 2}}]}
    )
    assert misfits(profile, {"t": FakeTask(lambda a, b=0: None)}) == []


def test_misfits_name_unknown_tasks_and_arguments_that_do_not_bind():
    profile = parse_profile(
        {"name": "p", "tasks": [{"name": "gone"}, {"name": "t", "kwargs": {"rows": 5}}]}
    )
    problems = misfits(profile, {"t": FakeTask(lambda path: None)})
    assert problems[0] == "gone: not registered in the Celery app"
    assert problems[1].startswith("t: args [] kwargs {'rows': 5} do not fit")


@pytest.mark.parametrize("name", sorted(BUILTIN_PROFILES))
def test_every_builtin_profile_fits_the_reference_app(name):
    from stack.app_factory import create_celery_app

    app = create_celery_app(Settings.load(environ={}))
    assert misfits(load_profile(name), app.tasks) == []


@pytest.mark.parametrize("path", sorted(PROFILES_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_profile_file_fits_the_reference_app(path):
    from stack.app_factory import create_celery_app

    app = create_celery_app(Settings.load(environ={}))
    assert misfits(load_profile(path), app.tasks) == []
