"""The benchmark: pwh against bare aiohttp (the ceiling) and dlt, on the RAYTeams simulator
running in its own process. ``python -m bench --help`` (or ``make bench``)."""
