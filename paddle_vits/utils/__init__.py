"""Small helpers shared across the package."""
from .helpers import to_2tuple, set_num_threads
from .io import atomic_path, atomic_save, atomic_write_bytes, atomic_write_text, remove_stale_temps

__all__ = ["to_2tuple", "set_num_threads", "atomic_path", "atomic_save", "atomic_write_bytes",
           "atomic_write_text", "remove_stale_temps"]
