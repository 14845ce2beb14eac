"""Device choice for scripts and notebooks: the GPU when Paddle has one, said out loud.

Usage in a script::

    from paddle_vits.utils.device import add_device_arg, select_device

    add_device_arg(parser)            # --device cpu|gpu, default: gpu when Paddle has one
    device = select_device(args.device)   # sets it and prints "device: gpu (...)"
"""
from .cli import UserError

__all__ = ["add_device_arg", "gpu_count", "select_device", "describe_environment"]


def gpu_count():
    """GPUs Paddle can use: 0 for a CPU build of Paddle or when no GPU is visible."""
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        return 0
    return paddle.device.cuda.device_count()


def add_device_arg(parser):
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="where to run (default: gpu when Paddle has one, else cpu)")
    return parser


def describe_environment():
    """One line: Paddle version and build, and the GPUs it sees."""
    import paddle

    n = gpu_count()
    if n:
        name = paddle.device.cuda.get_device_name(0)
        return f"Paddle {paddle.__version__} (CUDA build), {n} GPU{'s' if n > 1 else ''}: {name}"
    build = "CUDA build, no GPU visible" if paddle.device.is_compiled_with_cuda() else "CPU build"
    return f"Paddle {paddle.__version__} ({build})"


def select_device(choice=None, verbose=True):
    """Set and return ``"gpu"`` or ``"cpu"``: ``choice``, or the GPU when Paddle has one.

    Raises:
        UserError: ``choice == "gpu"`` without a usable GPU.
    """
    import paddle

    if choice not in (None, "cpu", "gpu"):
        raise UserError(f"--device {choice!r} is not a device", "use --device cpu or --device gpu")
    if choice == "gpu" and not gpu_count():
        raise UserError(f"--device gpu, but Paddle sees no GPU ({describe_environment()})",
                        "install paddlepaddle-gpu for your CUDA, or pass --device cpu")
    device = choice or ("gpu" if gpu_count() else "cpu")
    paddle.set_device(device)
    if verbose:
        why = "chosen with --device" if choice else "default: gpu when Paddle has one"
        print(f"device: {device} ({why}; {describe_environment()})", flush=True)
    return device
