"""The commands of ``poolvec``, one module per group; each body translates options to the core's API and prints."""
