"""rfemu: RunnerFleet's extension of moto 5.2.1 (see ../README.md for every moto internal touched).

Each module has an install() that patches moto's own models and responses; launcher.py calls them
in order after checking the moto version.
"""
