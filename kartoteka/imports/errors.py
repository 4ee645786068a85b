"""What goes wrong with an import file or an import, as errors of the platform's hierarchy (400, 403, 404, 409)."""

from __future__ import annotations

from kartoteka.errors import BadRequest
from kartoteka.messages import N_


class ImportFileError(BadRequest):
    """The file cannot be read as a table: empty, not CSV, not XLSX, wrong encoding, no header..."""

    title = N_("File cannot be imported")
