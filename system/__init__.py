"""The host: settings, processes under limits, git plumbing and mirrors, globs, folders and the sandbox.

The bottom layer: it imports nothing of Fleet (ARCHITECTURE.md).
"""
