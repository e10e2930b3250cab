"""The `hfrecipes` command line (`commands.main`)."""
