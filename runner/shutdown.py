"""Exit as soon as the work is done. After the last run is closed and the summary printed, the
interpreter would still tear down torch, numpy, matplotlib and Hydra module by module: about 1 s
of a 3.8 s run on this machine (issue 23; `make bench` row "exit"), which a shell prompt, a
Makefile or a notebook cell waits for. What teardown does that matters is done here first, in
the interpreter's own order: executors stopped and non-daemon threads joined, every atexit handler (logging's flush,
multiprocessing's children and resource tracker, torch's and matplotlib's), then stdout and
stderr flushed; only the freeing of memory, which the OS does anyway, is skipped."""
import atexit
import os
import sys
import threading
from typing import Callable


def run(main: Callable[[], None]) -> None:
    """main(), then exit with its code (sys.exit's convention) without the interpreter's teardown."""
    try:
        main()
        code = 0
    except SystemExit as e:
        code = _code(e.code)
    # anything else propagates: the interpreter prints the traceback and exits 1 as usual
    # The interpreter's own first step of an exit: the callbacks of threading._register_atexit
    # (concurrent.futures' and loky's executors stop their workers there: without it, a joblib
    # sweep's management thread never ends), then every non-daemon thread joined.
    threading._shutdown()
    atexit._run_exitfuncs()  # documented as running the handlers in reverse order of registration
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing more can reach it
            pass
    os._exit(code)


def _code(code) -> int:
    """sys.exit(None) is 0, sys.exit(int) that int, sys.exit('text') prints it and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
