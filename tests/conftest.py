pytest_plugins = ["fixtures_store", "fixtures_db", "fixtures_diffusion", "fixtures_services"]
