"""The command line and `fleet demo`: the composition root that wires the control plane to the workers."""
