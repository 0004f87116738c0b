"""Types of the per-thread effective user id C extension (_threadcred.c)."""

def set_thread_euid(uid: int, /) -> None:
    """Set this thread's effective uid only (OSError when refused)."""
