"Long-lived worker processes for heavy jobs in FastHTML and Starlette apps."
__version__ = "0.1.0"

from .core.errors import ParameterError, PermanentError, TransientError
