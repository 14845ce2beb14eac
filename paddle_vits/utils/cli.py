"""One error path for every script.

Expected failures (bad input, a missing file, no space, a read-only or
unwritable output, a permission problem) print one line,
``error: <what> (<how to fix>)``, and exit with status 2, without a
traceback; ``--debug`` or ``PADDLE_VITS_DEBUG=1`` shows it. Unexpected
exceptions keep their traceback. Usage in a script::

    from paddle_vits.utils.cli import UserError, add_common_args, run

    def main(argv=None):
        p = argparse.ArgumentParser(); add_common_args(p); ...
        raise UserError("--batch-size must be >= 1, got 0", "pass a positive batch size")

    if __name__ == "__main__":
        sys.exit(run(main))
"""
import errno
import os
import sys
import traceback

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An expected failure the user can fix.

    Args:
        what: What is wrong, naming the input (file, option, value).
        fix: How to fix it; shown in parentheses after ``what``.
    """

    def __init__(self, what, fix=None):
        self.what = str(what)
        self.fix = fix
        super().__init__(f"{self.what} ({fix})" if fix else self.what)


_OS_FIXES = {
    errno.ENOSPC: "free disk space or write somewhere else",
    errno.EDQUOT: "free disk space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "check the permissions or choose another path",
    errno.EPERM: "check the permissions or choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder: give a file name",
    errno.ELOOP: "the path has a symlink loop: check the path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def os_error_message(exc):
    """``"<what> (<fix>)"`` for an expected ``OSError``, or ``None`` for an unexpected one."""
    fix = _OS_FIXES.get(exc.errno)
    if fix is None:
        return None
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        what = f"{what}: {exc.filename}"
    return f"{what} ({fix})"


def add_common_args(parser):
    """Add ``--debug`` (show tracebacks of expected errors) to a script's parser."""
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors (also PADDLE_VITS_DEBUG=1)")
    return parser


def add_runtime_args(parser, device_default=None):
    """Add ``--threads`` (CPU threads) and ``--device`` (``cpu``/``gpu``) to a script's parser."""
    from .argtypes import int_at_least

    parser.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default=device_default,
                        help="default: " + (device_default or "gpu when Paddle has one"))
    return parser


def add_weights_args(parser):
    """Add ``--unsafe-pickle`` and ``--allow-nonfinite``, the two ways past the safe weights reader."""
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="read the weights with plain pickle, which runs code stored in the file "
                             "(trusted files only)")
    parser.add_argument("--allow-nonfinite", action="store_true", help="accept weights holding NaN/inf on purpose")
    return parser


def _debug(argv):
    return "--debug" in argv or os.environ.get("PADDLE_VITS_DEBUG", "") not in ("", "0")


def run(main, argv=None):
    """Call ``main(argv)`` and turn expected failures into one line and exit status 2.

    Returns:
        The exit status: ``main``'s return value (``None`` -> 0), 2 for an
        expected error, 130 for Ctrl-C.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug(argv)
    try:
        rc = main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        msg = os_error_message(e)
        if msg is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if rc is None else int(rc)
