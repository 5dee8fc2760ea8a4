"""The profiler window's own stderr noise is dropped; every other line is kept (issue 21,
item 8: a CUDA build of torch on a machine without a driver printed
``gpuGetDeviceCount failed with code 35`` inside ``perfpilot profile`` output)."""

from __future__ import annotations

import os

import pytest

from perfpilot.probes.opwindow import _KINETO_NOISE, _QuietFd2

NOISE = [
    b"USDT:2026-11-28 SyncActivityProfilerHandler.cpp:52] profiler_start\n",
    b"gpuGetDeviceCount failed with code 35\n",
    b"ERROR:2026-12-05 10:00:00 1234:1234 DeviceProperties.cpp:47] "
    b"gpuGetDeviceCount failed with code 35\n",
    b"E1205 10:00:00.123456 1234 DeviceProperties.cpp:47] gpuGetDeviceCount failed with code 35\n",
]
KEPT = [
    b"a real warning\n",
    b"my_script: gpuGetDeviceCount failed with code 35, retrying\n",  # the user's own words
    b"gpuGetDeviceCount failed with code\n",
    b"RuntimeError: CUDA error: no kernel image is available\n",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_noise_lines_match(line: bytes) -> None:
    assert _KINETO_NOISE.match(line)


@pytest.mark.parametrize("line", KEPT)
def test_other_lines_do_not_match(line: bytes) -> None:
    assert not _KINETO_NOISE.match(line)


def test_quiet_fd2_drops_the_driver_line_and_keeps_the_rest(capfd: pytest.CaptureFixture[str],
                                                           ) -> None:
    with _QuietFd2():
        for line in NOISE + KEPT:
            os.write(2, line)
    err = capfd.readouterr().err
    assert err.encode() == b"".join(KEPT)
