"""0.2's module paths still import (until 0.4): the same module object as at its new home, with a warning."""
from __future__ import annotations

import importlib
import sys

import pytest

from flowprep.base.moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_with_a_deprecation_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    new = importlib.import_module(MOVED[old])
    assert module is new and new.__spec__.name == MOVED[old]  # its own spec, not the old name's


def test_old_names_of_the_two_modules_that_became_packages():
    import flowprep.datasets
    import flowprep.quality
    from flowprep.datasets.listing import list_videos
    from flowprep.quality.compression import evaluate

    with pytest.warns(DeprecationWarning, match="flowprep.datasets.list_videos moved to "
                                                "flowprep.datasets.listing.list_videos"):
        assert flowprep.datasets.list_videos is list_videos
    with pytest.warns(DeprecationWarning, match="flowprep.quality.evaluate moved to"):
        assert flowprep.quality.evaluate is evaluate
    with pytest.raises(AttributeError):
        flowprep.datasets.no_such_name  # noqa: B018


def test_the_lazy_public_names_are_listed_and_import():
    """dir(flowprep) lacked the names that load on first use (open_shards, ShardSet, extract_dataset...): tab
    completion and help() did not show them."""
    import flowprep

    assert set(flowprep.__all__) <= set(dir(flowprep))
    assert all(getattr(flowprep, name) is not None for name in flowprep.__all__)
