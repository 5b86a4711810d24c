"""A small application package that ``MediatorModule(packages=[...])`` scans in the tests."""
