"""Field types, by family; `kartoteka.metadata.fieldtypes` holds the registry."""
