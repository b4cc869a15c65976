"""Shared fixtures live in tests/fixtures/; this file only wires them in."""

pytest_plugins = [
    "tests.fixtures.moto_server",
    "tests.fixtures.pulumi_mocks",
]
