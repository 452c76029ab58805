pytest_plugins = ["fixtures_store"]
