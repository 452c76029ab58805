pytest_plugins = ["fixtures_store", "fixtures_diffusion"]
