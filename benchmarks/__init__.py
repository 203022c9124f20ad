"""Studies of keras-directcopy: each folder holds a study's code, its results
and a README with its numbers and the commands that measured them. Nothing in
the package or in scripts/ imports them."""
