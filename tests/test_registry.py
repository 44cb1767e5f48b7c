"""The registry against real entry-point metadata: a third-party package on sys.path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import raydrive
from raydrive import DriverLoadError, DriverNotFoundError, InvalidOptionsError
from raydrive.core.registry import DRIVER_GROUP, DriverRegistry, set_registry
from raydrive.drivers.local import LocalExecutor
from tests.actions_for_tests import AddAction

SITE = Path(__file__).parent / "plugins_data" / "site"


@pytest.fixture
def third_party(monkeypatch):
    """Put the third-party distribution (code + dist-info) on sys.path, as an install would."""
    monkeypatch.syspath_prepend(str(SITE))
    DriverRegistry.refresh()
    yield
    DriverRegistry.refresh()
    import sys

    for name in [m for m in sys.modules if m.startswith("rd_")]:
        del sys.modules[name]


def test_builtin_local_driver_is_registered_by_entry_point():
    names = [info.name for info in raydrive.available_drivers()]
    assert "local" in names
    info = next(i for i in raydrive.available_drivers() if i.name == "local")
    assert info.cls is LocalExecutor and info.ok
    assert info.description.startswith("Runs actions in-process")


def test_third_party_driver_is_usable_with_no_change_to_raydrive(third_party):
    executor = raydrive.get_executor("echo", prefix="hello")
    assert type(executor).__module__ == "rd_thirdparty"
    assert executor.execute(AddAction, {"a": 1}) == {"prefix": "hello", "result": {"total": 2}}


def test_listing_survives_broken_and_unimportable_drivers(third_party, caplog):
    with caplog.at_level(logging.WARNING, logger="raydrive.registry"):
        infos = {info.name: info for info in raydrive.available_drivers()}
    assert infos["echo"].ok
    assert infos["broken"].cls is None and "broken on purpose" in infos["broken"].error
    assert infos["unimportable"].cls is None and "rd_no_such_module_anywhere" in infos["unimportable"].error
    assert "could not load broken" in caplog.text


def test_asking_for_a_broken_driver_raises_wrapped_error_with_cause(third_party):
    with pytest.raises(DriverLoadError) as info:
        raydrive.get_executor("broken")
    assert "'broken'" in str(info.value) and "broken on purpose" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.__cause__.__traceback__ is not None
    with pytest.raises(DriverLoadError) as info:
        raydrive.get_executor("unimportable")
    assert isinstance(info.value.__cause__, ImportError)


def test_unknown_driver_names_group_name_and_known_drivers():
    with pytest.raises(DriverNotFoundError) as info:
        raydrive.get_executor("ray-nope")
    err = info.value
    assert isinstance(err, LookupError)
    assert err.group == DRIVER_GROUP and err.name == "ray-nope"
    assert "local" in err.available and "local" in str(err) and DRIVER_GROUP in str(err)


def test_bad_option_names_and_values_fail_naming_the_field():
    with pytest.raises(InvalidOptionsError) as info:
        raydrive.get_executor("local", max_wrokers=2)
    assert "max_wrokers: unknown option" in str(info.value)
    with pytest.raises(InvalidOptionsError) as info:
        raydrive.get_executor("local", max_workers="many")
    assert "max_workers" in str(info.value)


def test_registry_from_classes_needs_no_entry_points():
    registry = DriverRegistry.from_classes({"mine": LocalExecutor})
    set_registry(registry)
    try:
        assert [i.name for i in raydrive.available_drivers()] == ["mine"]
        assert isinstance(raydrive.get_executor("mine"), LocalExecutor)
        with pytest.raises(DriverNotFoundError):
            raydrive.get_executor("local")
    finally:
        set_registry(None)


def _found(registry: DriverRegistry, name: str) -> bool:
    try:
        registry.get(name)
    except DriverNotFoundError:
        return False
    return True


def test_a_listed_driver_is_a_driver_get_finds_even_before_a_refresh(monkeypatch):
    # One discovery path: a package put on sys.path after the registry first looked is either
    # seen by both names() and get(), or by neither until refresh() (before: names() read the
    # metadata afresh, get() stevedore's cache, and get() raised a bare KeyError).
    registry = DriverRegistry()
    assert "local" in registry.names() and registry.get("local") is LocalExecutor
    monkeypatch.syspath_prepend(str(SITE))
    try:
        assert ("echo" in registry.names()) == _found(registry, "echo")
        DriverRegistry.refresh()
        assert "echo" in registry.names() and _found(registry, "echo")
    finally:
        DriverRegistry.refresh()
        import sys

        for name in [m for m in sys.modules if m.startswith("rd_")]:
            del sys.modules[name]
