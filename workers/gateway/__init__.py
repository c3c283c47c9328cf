"""The metering model gateway (server.py): agents' model calls, metered, priced and kept within budget."""
