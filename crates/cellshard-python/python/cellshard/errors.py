"""The exceptions cellshard raises. Each is also the built-in exception a caller would
catch for that kind of failure, so ``except ValueError`` keeps working.

=================  ====================  ==============================================
exception          also a                raised for
=================  ====================  ==============================================
``InvalidInput``   ``ValueError``        a bad predicate, cursor, SQL or argument
``NotFound``       ``FileNotFoundError`` a missing store, table or version
``StoreError``     ``OSError``           the store failed (an outage after retries)
``InternalError``  ``RuntimeError``      a bug in cellshard
=================  ====================  ==============================================
"""


class Error(Exception):
    """Base of every cellshard error."""


class InvalidInput(Error, ValueError):
    """The request is invalid: a bad predicate, cursor, SQL statement or argument."""


class NotFound(Error, FileNotFoundError):
    """What the request names does not exist: a store, table or version."""


class StoreError(Error, OSError):
    """The store could not be read (an outage that outlasted the retries)."""


class InternalError(Error, RuntimeError):
    """A bug in cellshard."""
