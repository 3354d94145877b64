"""Test-support code shared by the plantfed test suite (imported as ``support``)."""
