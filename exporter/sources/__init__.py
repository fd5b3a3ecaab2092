"""Pure parsers of kernel files: text in, dataclasses out. No I/O, no prometheus imports."""


class ParseError(ValueError):
    """The text is not in the format the parser expects; the message says where and why."""
