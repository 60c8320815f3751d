"""The list commands' light read of the settings names the store the full settings name."""

from __future__ import annotations

import os

import pytest

from govshare import readonly
from govshare.settings import Settings, _resolved


@pytest.mark.parametrize("environment", [
    {},
    {"GOVSHARE_HOME": "~/somewhere/else"},
    {"GOVSHARE_HOME": "relative/home", "GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS": "12.5"},
    {"govshare_home": "/srv/lower-case", "Govshare_Sqlite_Busy_Timeout_Seconds": "600"},
    {"GOVSHARE_DATABASE_URL": "postgresql+psycopg://app@db.internal:5432/govshare?sslmode=require", "GOVSHARE_HOME": "/x"},
    {"GOVSHARE_DATABASE_URL": "", "GOVSHARE_HOME": "/srv/empty-url"},
], ids=["defaults", "home-with-tilde", "relative-home-and-timeout", "names-in-any-case", "database-url", "empty-url"])
def test_the_light_read_names_the_store_the_settings_name(monkeypatch, tmp_path, environment):
    monkeypatch.chdir(tmp_path)
    _resolved.cache_clear()  # relative paths are remembered resolved, from whatever folder asked first
    for key in [key for key in os.environ if key.lower().startswith("govshare_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert readonly.store_from_environment() == (settings.resolved_database_url, settings.sqlite_busy_timeout_seconds)


@pytest.mark.parametrize("environment", [
    {"GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS": "0"}, {"GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS": "601"},
    {"GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS": "soon"}, {"GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS": "nan"},
    {"GOVSHARE_HOME": "/a", "govshare_home": "/b"}, {"GOVSHARE_HOME": ""},
])
def test_anything_out_of_the_ordinary_is_left_to_the_full_settings(environment):
    assert readonly.store_from_environment(environment) is None
