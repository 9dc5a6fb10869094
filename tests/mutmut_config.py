"""mutmut's hooks, found by name on sys.path (mutmut checks mutants in a spawned process): see mutation.py."""

from mutation import pre_mutation  # noqa: F401
