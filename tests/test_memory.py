"""The allocator setting the repscope command applies at start (see repscope.memory)."""

import ctypes.util
import sys

import pytest

from repscope.memory import retain_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or "libc" not in (ctypes.util.find_library("c") or ""),
                    reason="glibc's mallopt")
def test_glibc_accepts_the_setting_and_it_can_be_repeated():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True


def test_elsewhere_nothing_changes(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retain_freed_memory() is False
