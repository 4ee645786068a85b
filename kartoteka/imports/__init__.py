"""Import CSV and XLSX files into cards through the record service, undo an import, export a list.

reader.py   open a file as a header and a stream of rows (encoding, separator, broken files)
matching.py columns to fields by name and label, in any language, with "did you mean"
values.py   a cell's text as a field's input (option labels, lists, users, references)
runner.py   preview, dry run and import in batches (one transaction each), upsert by a key; the `imports` table
undo.py     undo an import from the journal: created records deleted, updated ones reverted
export.py   a list (its filters, sort and the columns the user may view) as CSV or XLSX, streamed
commands.py `kartoteka import`, `kartoteka export`, `kartoteka undo-import`
"""
