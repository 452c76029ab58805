pytest_plugins = ["tests.diffusion_fixtures"]
