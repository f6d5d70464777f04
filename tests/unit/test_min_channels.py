"""prune_channels never prunes a group below min_channels (issue 23: the FC autoencoder's
8-unit bottleneck halved to 4 raised its RMSE 13%)."""

from __future__ import annotations

import pytest

from edgec.errors import InputError
from edgec.stages.structure.channel_prune import kept_count, plan_channel_pruning


def test_kept_count_never_goes_below_min_channels():
    assert kept_count(8, 0.5, 4) == 4  # the library default floor is one multiple
    assert kept_count(8, 0.5, 4, 8) == 8  # a group of min_channels or fewer stays whole
    assert kept_count(6, 0.5, 4, 8) == 6
    assert kept_count(12, 0.5, 4, 8) == 8  # 6 rounds to 8, the floor
    assert kept_count(16, 0.5, 4, 8) == 8
    assert kept_count(16, 0.9, 4, 8) == 8
    assert kept_count(128, 0.5, 4, 8) == 64  # wide groups prune as before


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_min_channels_is_refused_before_any_model_work(bad):
    with pytest.raises(InputError, match="min_channels must be a positive integer"):
        plan_channel_pruning(object(), 0.5, min_channels=bad)
