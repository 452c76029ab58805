pytest_plugins = ["fixtures_db"]
