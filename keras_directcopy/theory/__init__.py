"""The linear-network lab: DirectPred and DirectCopy on a linear encoder,
in closed form and by simulation, in NumPy (`linear_network`)."""
