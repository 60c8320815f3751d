"""Settings: one class, read from ``GOVSHARE_*`` environment variables."""

from __future__ import annotations

import ipaddress
from datetime import date
from typing import Literal
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from govshare.readonly import DEFAULT_BUSY_TIMEOUT_SECONDS


class Settings(BaseSettings):
    """Everything that can be configured. Each field is documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="GOVSHARE_", extra="ignore")

    home: Path = Field(default=Path(".govshare"), description="where the embedded store lives")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the record store; default a SQLite file under home"
    )
    data_dir: Path | None = Field(default=None, description="snapshots and extracts; default home/data (GOVSHARE_DATA_URL wins)")
    data_url: str | None = Field(
        default=None, description="the data store: a local folder (default home/data) or s3://BUCKET/PREFIX",
    )
    s3_endpoint_url: str | None = Field(default=None, description="URL of an S3-compatible store (MinIO, Ceph); default AWS")
    cache_dir: Path | None = Field(default=None, description="this replica's caches, the only data on its disk; default home/cache")
    cache_max_bytes: int = Field(
        default=20 * 1024**3, ge=1024 * 1024, description="disk budget of the cache of store objects (least recently used evicted)",
    )
    downloads: Literal["stream", "presigned"] = Field(
        default="stream", description="extracts and Delta Sharing files: streamed through the API, or pre-signed URLs of the store",
    )
    redis_url: str | None = Field(default=None, description="Redis shared by replicas for rate limits and live services' breakers and caps; per process when unset")
    redis_key_prefix: str = Field(default="govshare:ratelimit:", max_length=200, description="prefix of govshare's keys in Redis (rate limits, live services' breakers and calls in flight)")
    job_lease_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="how long a replica's claim on a job's work lasts without renewal (then another takes it over)",
    )
    test_pause_dir: Path | None = Field(
        default=None, description="tests only: a folder; while it holds a file named 'pause', a claimed extract waits before it is built",
    )
    keys_dir: Path | None = Field(default=None, description="signing keys; default home/keys")
    sources_dir: Path | None = Field(default=None, description="the only local folder file sources may read; default home/sources")
    issuer: str = Field(
        default="http://127.0.0.1:8000",
        description="public base URL of this server: the token issuer and the audience of tokens",
    )
    token_ttl_seconds: int = Field(default=3600, ge=60, le=86400, description="access token lifetime")
    client_assertion_max_age_seconds: int = Field(
        default=3600, ge=30, le=86400, description="longest accepted lifetime of a private_key_jwt assertion"
    )
    allow_insecure_http: bool = Field(
        default=False, description="allow a plain-http issuer on a non-loopback host (never in production)"
    )
    inspection_working_days: int = Field(default=2, ge=0, le=60, description="working days allowed for the normative inspection")
    decision_working_days: int = Field(default=10, ge=1, le=120, description="working days allowed from filing to decision")
    correction_working_days: int = Field(default=5, ge=1, le=60, description="working days a provider has to answer a correction request")
    max_usage_months: int = Field(default=12, ge=1, le=120, description="longest usage period an application may ask for")
    disclosure_max_delay_days: int = Field(default=180, ge=1, le=3650,
                                           description="longest an application may delay citizens' sight of its accesses (days from filing)")
    citizen_request_days: int = Field(default=30, ge=1, le=365,
                                      description="days after the day it was asked that a citizen request may be approved or collected")
    holidays: list[date] = Field(default_factory=list, description="public holidays, as a JSON list of dates")
    extra_working_days: list[date] = Field(default_factory=list, description="weekend days that are working days (JSON list)")
    timezone: str = Field(default="UTC", description="the time zone working days and usage periods are counted in")
    jobs_enabled: bool = Field(default=True, description="run background jobs (webhooks, escalation, extracts, keyed stores, erasing ended grants' files) in this process")
    webhook_interval_seconds: float = Field(default=5.0, gt=0, description="how often new events are posted to webhooks")
    escalation_interval_seconds: float = Field(default=600.0, gt=0, description="how often overdue applications are escalated")
    sync_check_interval_seconds: float = Field(default=300.0, gt=0, description="how often sources due by their update frequency are synced")
    rate_limit_per_second: float = Field(default=200.0, gt=0, description="interface calls a second per client, on average")
    rate_limit_burst: int = Field(default=400, ge=1, description="interface calls a client may make in a burst")
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="largest accepted request body (file uploads)")
    max_json_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="largest accepted JSON or form body")
    request_body_timeout_seconds: float = Field(default=60.0, gt=0, description="time a request body may take to arrive")
    request_header_timeout_seconds: float = Field(
        default=30.0, gt=0, description="time a request's head (request line and headers) may take to arrive",
    )
    sqlite_busy_timeout_seconds: float = Field(
        default=DEFAULT_BUSY_TIMEOUT_SECONDS, gt=0, le=600,
        description="how long a write waits for SQLite's lock before the request answers 503 store-busy",
    )
    ledger_backlog_limit: int = Field(
        default=100_000, ge=1,
        description="access ledger lines waiting for the record store beyond which interface calls answer 503 ledger-unavailable",
    )
    ledger_high_water: int = Field(
        default=50_000, ge=1,
        description="access ledger lines waiting for the record store above which lookups wait for the ledger's writer before they are served",
    )
    ledger_wait_seconds: float = Field(
        default=10.0, gt=0, le=600,
        description="how long a lookup waits for the ledger's writer to catch up before it answers 503 ledger-unavailable",
    )
    source_connect_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="how long connecting to a source (a database's handshake, an HTTP or S3 connection) may take before it fails with 504 source-timeout",
    )
    outbound_allowlist: list[str] = Field(
        default_factory=list,
        description="internal hosts, addresses or CIDR ranges that webhooks, HTTP sources and S3 endpoints may reach (JSON list)",
    )
    live_max_answer_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=256 * 1024 * 1024,
        description="largest answer a live service's provider may send; a larger one answers 502 live-answer-too-large",
    )
    live_breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="consecutive failures of a live dataset's provider after which calls fail fast (503)",
    )
    live_breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="how long a live dataset's open circuit fails fast before one call probes the provider again",
    )
    live_calls_per_grant: int = Field(
        default=8, ge=1, le=10_000, description="live calls one grant may have in flight at once; more answer 429 live-busy",
    )
    sharing_url_seconds: int = Field(default=900, ge=10, le=86400, description="lifetime of a Delta Sharing file URL")
    sharing_refresh_seconds: int = Field(
        default=86400, ge=60, le=7 * 86400, description="how long a Delta Sharing read may refresh its file URLs"
    )

    # Citizens sign in to their page (/me) through the government's identity provider (OpenID Connect).
    citizen_oidc_issuer: str | None = Field(
        default=None,
        description="the identity provider's issuer URL (its /.well-known/openid-configuration is read); unset: citizens cannot sign in",
    )
    citizen_oidc_client_id: str | None = Field(default=None, max_length=200, description="govshare's client ID at the identity provider")
    citizen_oidc_client_secret: SecretStr | None = Field(
        default=None, description="govshare's client secret at the identity provider (from the environment only, never a file in the repository)",
    )
    citizen_oidc_id_claim: str = Field(
        default="sub", min_length=1, max_length=100, description="the ID token claim that holds the citizen ID (e.g. citizen_id)",
    )
    citizen_oidc_scopes: str = Field(
        default="openid", max_length=500, description="scopes asked of the identity provider, space-separated; must include openid",
    )
    citizen_oidc_redirect_base: str | None = Field(
        default=None, description="public base URL the identity provider sends citizens back to (BASE/me/callback); default GOVSHARE_ISSUER",
    )

    @field_validator("issuer", "citizen_oidc_issuer", "citizen_oidc_redirect_base")
    @classmethod
    def _issuer_has_no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value is not None else None

    @field_validator("citizen_oidc_scopes")
    @classmethod
    def _scopes_ask_for_openid(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError("GOVSHARE_CITIZEN_OIDC_SCOPES must include openid")
        return value

    @model_validator(mode="after")
    def _citizen_sign_in_is_complete_and_secure(self) -> Settings:
        if self.citizen_oidc_issuer is None:
            return self
        if not self.citizen_oidc_client_id or self.citizen_oidc_client_secret is None \
                or not self.citizen_oidc_client_secret.get_secret_value():
            raise ValueError("GOVSHARE_CITIZEN_OIDC_ISSUER needs GOVSHARE_CITIZEN_OIDC_CLIENT_ID and GOVSHARE_CITIZEN_OIDC_CLIENT_SECRET")
        for name in ("citizen_oidc_issuer", "citizen_oidc_redirect_base"):
            value = getattr(self, name)
            url = urlsplit(value) if value else None
            if url is None:
                continue
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"GOVSHARE_{name.upper()} must be an absolute http(s) URL, got {value!r}")
            if url.scheme == "http" and not _is_loopback(url.hostname) and not self.allow_insecure_http:
                raise ValueError(f"GOVSHARE_{name.upper()} must be https (or http on a loopback address)")
        return self

    @property
    def citizen_redirect_uri(self) -> str:
        """Where the identity provider sends a citizen back after signing in."""
        return f"{self.citizen_oidc_redirect_base or self.issuer}/me/callback"

    @model_validator(mode="after")
    def _issuer_is_https_or_loopback(self) -> Settings:
        # OAuth2 must run over TLS. TLS usually ends at a proxy in front of us, so the
        # rule is applied to the public URL clients use, not to each request.
        url = urlsplit(self.issuer)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"GOVSHARE_ISSUER must be an absolute http(s) URL, got {self.issuer!r}")
        if url.scheme == "http" and not _is_loopback(url.hostname) and not self.allow_insecure_http:
            raise ValueError(
                "GOVSHARE_ISSUER must be https (or http on a loopback address); "
                "set GOVSHARE_ALLOW_INSECURE_HTTP=true only for a closed test network"
            )
        return self

    @property
    def resolved_home(self) -> Path:
        return _resolved(self.home)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'govshare.db'}"

    @property
    def resolved_data_dir(self) -> Path:
        return _resolved(self.data_dir or self.resolved_home / "data")

    @property
    def resolved_data_url(self) -> str:
        """The data store: ``s3://...`` or an absolute local folder."""
        if self.data_url and self.data_url.startswith("s3://"):
            return self.data_url
        if self.data_url:
            return str(_resolved(Path(self.data_url.removeprefix("file://"))))
        return str(self.resolved_data_dir)

    @property
    def resolved_cache_dir(self) -> Path:
        return _resolved(self.cache_dir or self.resolved_home / "cache")

    @property
    def resolved_sources_dir(self) -> Path:
        return _resolved(self.sources_dir or self.resolved_home / "sources")

    @property
    def resolved_keys_dir(self) -> Path:
        return _resolved(self.keys_dir or self.resolved_home / "keys")

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/oauth/token"


@lru_cache(maxsize=256)
def _resolved(path: Path) -> Path:
    """``path`` made absolute, ``~`` and symbolic links resolved: asked on every request,
    so remembered (it costs a system call per path component)."""
    return path.expanduser().resolve()


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests clear the cache to override them."""
    return Settings()
