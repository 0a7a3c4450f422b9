"""The changelog codec across releases: bytes written by this release and by the one before
must decode to the same state in every later release (issue 14: "a worker of the next release
can recover a worker of this release's tables").

The byte strings below are written literally, as a changelog topic holds them: a change of the
codec that would misread a table a running worker wrote makes these tests fail, where a round
trip through the current code alone would not notice.
"""

from __future__ import annotations

import pytest

from streams.state import Latest, Slot, Watermark, decode, encode

#: (changelog bytes, the state they are) — release 2026-11 (state version 1)
VERSION_1 = [
    (b'[1,"s",[1780000000000,1200.5,null],[1780000840000,1300.25,4.5],[]]',
     Slot(first=(1780000000000, 1200.5, None), last=(1780000840000, 1300.25, 4.5))),
    (b'[1,"s",null,null,[[1780000000000,500.0],[1780000300000,-20.5]]]',
     Slot(power=[(1780000000000, 500.0), (1780000300000, -20.5)])),
    (b'[1,"l",2300.0,1780000000000]', Latest(2300.0, 1780000000000)),
    (b'[1,"w",1780003600000,1779990000000]', Watermark(1780003600000, 1779990000000)),
    (b'[1,"w",1780003600000,null]', Watermark(1780003600000, None)),
]
#: the release before the typed state: plain JSON read by string keys
LEGACY = [
    (b'{"cf":[1780000000000,1200.5,null],"cl":[1780000840000,1300.25,4.5]}',
     Slot(first=(1780000000000, 1200.5, None), last=(1780000840000, 1300.25, 4.5))),
    (b'{"p":[[1780000000000,500],[1780000300000,-20.5]]}',
     Slot(power=[(1780000000000, 500.0), (1780000300000, -20.5)])),
    (b"1780003600000", 1780003600000),  # a watermark was a plain number
    (b"[2300.0,1780000000000]", [2300.0, 1780000000000]),  # latest: [W, ts] (legacy_latest)
]


@pytest.mark.parametrize(("raw", "state"), VERSION_1 + LEGACY)
def test_changelog_bytes_of_earlier_releases_decode(raw, state):
    assert decode(raw) == state


@pytest.mark.parametrize(("raw", "state"), VERSION_1)
def test_this_release_writes_the_documented_bytes(raw, state):
    assert encode(state) == raw


def test_a_newer_version_is_refused_not_misread():
    with pytest.raises(ValueError, match="newer than this worker knows"):
        decode(b'[2,"s",null,null,[]]')
    with pytest.raises(ValueError, match="unknown state type"):
        decode(b'[1,"z",1]')
