"""The routing core: labelled examples, quality prediction, policies. No I/O in here."""
