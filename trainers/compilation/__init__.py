"""XLA's compiled programs in a worker: the persistent compilation cache shared by a machine's
workers (cache), who of the workers starting one shape together compiles which program (share),
and how many compilations a process has made (counts)."""
