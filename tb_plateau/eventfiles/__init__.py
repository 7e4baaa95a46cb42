"""Event files: the record framing, checksums and damage (`records`), and a data provider
over one local run read in one pass (`provider`)."""
