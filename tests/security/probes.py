"""Source text the escape suite's probes run inside a sandbox (they must not import anything from Fleet)."""

# Defines reach(family, address): "REACHED" when a connection opens, else the error's type name.
REACH = """
import socket

def reach(family, address):
    try:
        with socket.socket(family) as s:
            s.settimeout(2)
            s.connect(address)
        return "REACHED"
    except OSError as exc:
        return type(exc).__name__
"""
