"""The Django-free core of training: configs, losses and the progress-reporter protocol.

Nothing here imports Django, and importing this package imports nothing heavy; import
the submodules you need (``training.core.losses`` pulls in torch, ``training.core.configs``
and ``training.core.reporting`` use only the standard library). The Django side drives
the runners through one config dataclass and a :class:`~training.core.reporting.ProgressReporter`.
"""
