"""`python -m bench.profiled_service`: run one service (`python -m $MOCKEX_BENCH_SERVICE`) exactly
as it runs normally, with pyinstrument switched on by SIGUSR1 and off by SIGUSR2.

The end-to-end benchmark starts the engine and the gateway through this wrapper so that it can
profile one rate step of a running stack without a hook in the services: SIGUSR1 starts a
sampling profiler on the main thread (the asyncio loop), SIGUSR2 stops it and writes, into
$MOCKEX_BENCH_PROFILE_DIR, `<name>.flat.txt` (functions by own time), `<name>.tree.txt` (the call
tree) and `<name>.pyisession` (pyinstrument's session, for `pyinstrument --load`). Until SIGUSR1
the wrapper costs nothing.
"""

from __future__ import annotations

import inspect
import os
import runpy
import signal
import sys
from pathlib import Path

PROFILE_INTERVAL_SECONDS = 0.001


def _profile_dir() -> Path:
    return Path(os.environ.get("MOCKEX_BENCH_PROFILE_DIR", "."))


def main() -> None:
    module = os.environ["MOCKEX_BENCH_SERVICE"]
    name = os.environ.get("MOCKEX_BENCH_PROFILE_NAME", module)
    root = inspect.currentframe()
    state: dict[str, object] = {}

    def start(signum, frame) -> None:
        from pyinstrument import Profiler

        if "profiler" in state:
            return
        profiler = Profiler(interval=PROFILE_INTERVAL_SECONDS, async_mode="disabled")
        profiler.start(caller_frame=root)
        state["profiler"] = profiler

    def stop(signum, frame) -> None:
        from pyinstrument.renderers import ConsoleRenderer

        profiler = state.pop("profiler", None)
        if profiler is None:
            return
        session = profiler.stop()
        out = _profile_dir()
        out.mkdir(parents=True, exist_ok=True)
        session.save(out / f"{name}.pyisession")
        flat = ConsoleRenderer(flat=True, time="percent_of_total", show_all=True)
        (out / f"{name}.flat.txt").write_text(flat.render(session))
        tree = ConsoleRenderer(time="percent_of_total")
        (out / f"{name}.tree.txt").write_text(tree.render(session))
        (out / f"{name}.done").write_text("")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
