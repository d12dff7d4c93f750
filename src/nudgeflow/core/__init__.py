"""The pure core: decisions without I/O and without the wall clock."""
