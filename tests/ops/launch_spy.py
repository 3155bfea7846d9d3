"""A stand-in for an op's tuned kernel, for the tests of which config the op launches."""


class LaunchSpy:
    """Calls `real` and records the `keys` (tile constexprs) each launch passes; `kernel` is what the tuning database
    is keyed by (autotune.lookup unwraps it), so lookups see the real kernel."""

    def __init__(self, real, keys):
        self.kernel, self.keys, self.calls = real, tuple(keys), []

    def __call__(self, *args, **kwargs):
        self.calls.append({k: kwargs[k] for k in self.keys if k in kwargs})
        return self.kernel(*args, **kwargs)
