"""Local stack for development and tests: real parts run as local processes.

Nothing here ships in the Helm chart or the images.
"""
