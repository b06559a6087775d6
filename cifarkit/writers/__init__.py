"""Output helpers every writer shares: atomic files (:mod:`.atomic`) and the files that describe an
export (:mod:`.manifest`)."""
