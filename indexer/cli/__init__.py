"""The ``poolvec`` command line: the Typer app and its entry point (:mod:`.app`), errors and the index's opening
(:mod:`.run`), output (:mod:`.output`), shared options (:mod:`.params`), progress bars (:mod:`.progress`), and one
module per group of commands (:mod:`.commands`)."""
