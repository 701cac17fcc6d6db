"""Every error cnnc raises derives from :class:`CnncError`.

Messages name the layer, node or argument at fault and quote what was expected and
what was received, so a user can fix the call without reading cnnc's source.
"""


class CnncError(Exception):
    """Base class of every error raised by cnnc."""


class ConfigError(CnncError, ValueError):
    """A bad argument: a layer option, an op attribute, a compile option."""


class ShapeError(CnncError, ValueError):
    """Shapes or ranks that do not fit together."""


class DTypeError(CnncError, TypeError):
    """An input of a type or dtype cnnc cannot use."""


class VerificationError(CnncError):
    """The graph IR breaks an invariant (typing, single definition, acyclicity)."""


class UnsupportedError(CnncError, NotImplementedError):
    """A feature, op or target that is not available (yet, or on this machine)."""


class ResourceError(CnncError, MemoryError):
    """A request that needs more memory than the machine has available (refused before
    allocating, so the process is not killed by the operating system)."""


class KernelError(CnncError, RuntimeError):
    """Generated code failed while running (a fault cnnc's checks did not catch): the message
    names the model, the target and, where it can be found, the node whose code failed."""
