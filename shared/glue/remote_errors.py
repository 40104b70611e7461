"""Registers the core's errors with nameko, so they cross RPC as their own types (both sides:
services raise them, callers get them back). Import this module wherever RPC is called."""
from nameko.exceptions import deserialize_to_instance

from shared.core.errors import EXPECTED

for _error in EXPECTED:
    deserialize_to_instance(_error)
