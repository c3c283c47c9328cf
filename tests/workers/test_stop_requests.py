"""A worker's stop requests: the second hands the running attempts back at once, however the first is going."""

from __future__ import annotations

import threading

from workers.serve import Stop


class Runtime:
    """What Stop drives on a WorkerRuntime: the stopping flag and hand_back."""

    def __init__(self) -> None:
        self.stopping, self.handing_back = threading.Event(), threading.Event()
        self.handed_back = 0
        self.leases = ["an attempt at work"]

    def hand_back(self) -> None:
        self.handed_back += 1
        self.handing_back.set()


def test_a_second_request_while_the_first_one_is_printing_hands_back_at_once() -> None:
    runtime, said = Runtime(), []

    def announce(line: str) -> None:  # a second Ctrl-C lands while the first one's line is printed
        said.append(line)
        if len(said) == 1:
            stop.request()

    stop = Stop(runtime, 300.0, announce)  # type: ignore[arg-type]
    stop.request()
    stop.close()
    assert runtime.stopping.is_set() and runtime.handed_back == 1
    assert said[1] == "stopping the running attempts now: they go back in line, no verdict"


def test_a_broken_terminal_does_not_stop_the_stop() -> None:
    runtime = Runtime()

    def announce(line: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    stop = Stop(runtime, 300.0, announce)  # type: ignore[arg-type]
    stop.request()
    stop.request()
    stop.close()
    assert runtime.stopping.is_set() and runtime.handed_back == 1
