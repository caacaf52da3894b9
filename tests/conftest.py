"""Shared test configuration: the stand-ins' fixtures are registered as plugins."""

pytest_plugins = [
    "tests.standins.plugin_salesforce",
    "tests.standins.plugin_openai",
    "tests.standins.plugin_twilio",
]
