"""Keeping library chatter off the user's terminal.

TensorFlow's C++ logging, absl, Beam and Keras write straight to file
descriptors 1 and 2, so redirecting sys.stdout is not enough: the descriptors
themselves are pointed elsewhere while the libraries run, and the real stdout
is handed back for the lines the user is meant to read.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def fds_to(path: str) -> Iterator[TextIO]:
    """fd 1 and 2 appended to `path` inside the block; yields the real stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        console = os.fdopen(os.dup(saved_out), "w", buffering=1)
        try:
            yield console
        finally:
            for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
                try:
                    stream.flush()
                except OSError:  # the log's disk is full: what it could not take is dropped, not kept to spill
                    null = os.open(os.devnull, os.O_WRONLY)  # onto the console at the next flush
                    os.dup2(null, fd)
                    os.close(null)
                    with contextlib.suppress(OSError):
                        stream.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            with contextlib.suppress(BrokenPipeError):  # the reader went away (`| head`): what it missed is dropped
                console.close()


@contextlib.contextmanager
def silenced() -> Iterator[TextIO]:
    """Library output and Python warnings discarded while TensorFlow, TFDV or TFMA load and run:
    their chatter is not a result. Errors still raise; the caller words them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with fds_to(os.devnull) as console, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield console
