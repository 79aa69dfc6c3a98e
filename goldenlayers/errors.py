"""Errors a user can act on. Each says what was wrong and where (file, record, field, layer)."""


class GoldenLayersError(Exception):
    """Base class: the command line prints these as one clear line instead of a traceback."""


class InputError(GoldenLayersError):
    """Bad input data: names the source, the record index and the field."""

    def __init__(self, message: str, *, source: str | None = None, index: int | None = None,
                 field: str | None = None):
        where = ", ".join(
            part for part in (
                source and f"{source}",
                index is not None and f"record {index}",
                field and f"field {field!r}",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.source, self.index, self.field = source, index, field
