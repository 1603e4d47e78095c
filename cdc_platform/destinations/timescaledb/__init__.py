"""TimescaleDB destination (:mod:`.sink`): the change history per table, optionally with the current state.

Kept free of imports so that loading the package does not load the database driver.
"""
