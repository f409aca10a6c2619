"""Gateway settings: the `gateway:` section of config.yaml, env prefix IMGSEARCH_GATEWAY_.

The internal services' URLs default to the host/port of their own sections
(`services.common.peers`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.common.peers import peer_url, port_field
from services.common.settings import REPO_ROOT, SectionSettings
from services.common.vocabulary import INDEX_MAX_K

MIN_JWT_SECRET = 32


class _IndexLimits(SectionSettings, section="index"):
    """The index section's `max_k`, read by the gateway: the deepest page of results."""

    max_k: int = INDEX_MAX_K


class SakuraSettings(SectionSettings, section="sakura"):
    """The home page's falling blossoms (the original SakuraEffect.vue constants)."""

    enabled: bool = True
    count: int = Field(default=30, ge=0, le=500)
    fall_speed: float = Field(default=1.5, ge=0, le=20)


class GatewaySettings(SectionSettings, section="gateway"):
    port: int = port_field("gateway")
    public_search: bool = True
    # /metrics: with a token, only `Authorization: Bearer <metrics_token>` or an admin;
    # without one, anyone when search is public, else admins only.
    metrics_token: SecretStr = SecretStr("")
    # Image URLs in JSON answers are signed for <img> tags (which send no token) when search
    # is not public, or for admins' images that are not indexed; they live this long.
    signed_url_ttl_s: int = Field(default=900, ge=60, le=86400)
    # A job's event stream opens with a one-purpose ticket (EventSource sends no token; tokens
    # never go in URLs), asked for just before: it lives this long.
    stream_ticket_ttl_s: int = Field(default=60, ge=5, le=600)

    jwt_secret: SecretStr = SecretStr("")
    jwt_expiry_s: int = Field(default=3600, ge=60)
    jwt_issuer: str = "imgsearch"
    jwt_audience: str = "imgsearch-api"
    # A token is checked against its user (exists, role, token version) at most this long
    # ago: a deleted, demoted or re-passworded user's old tokens stop working within it.
    session_check_ttl_s: float = Field(default=5.0, ge=0, le=300)
    # First admin, created at start only when the catalog has no admin yet.
    admin_username: str = ""
    admin_password: SecretStr = SecretStr("")

    # Rate limits are per client (the user when logged in, else the address).
    redis_url: str = ""
    redis_prefix: str = "imgsearch:gateway:"
    search_rate_per_minute: int = Field(default=120, ge=1)
    login_rate_per_minute: int = Field(default=10, ge=1)
    # Failed logins per account and minute, from any address; past it the account's logins
    # answer 429 until the minute ends (guessing cannot spread over many addresses).
    login_account_failures_per_minute: int = Field(default=10, ge=1)
    # Searches running at once; past it (plus the queue) answers 503 with Retry-After.
    max_concurrent_searches: int = Field(default=4, ge=1)
    search_queue: int = Field(default=16, ge=0)
    search_queue_timeout_s: float = Field(default=10.0, gt=0)
    # Segmentation (clicks, and encoding a query image as it is chosen) has a gate of its
    # own: bounded and shed with 503 like search, without queueing searches behind an image
    # encoder pass (seconds on a busy host).
    max_concurrent_segmentations: int = Field(default=2, ge=1)
    segmentation_queue: int = Field(default=8, ge=0)
    segmentation_queue_timeout_s: float = Field(default=30.0, gt=0)
    retry_after_s: int = Field(default=2, ge=1)

    max_upload_bytes: int = Field(default=20_000_000, ge=1)
    max_files_per_request: int = Field(default=100, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # A sketch is a canvas drawing, decoded here: a screen-sized canvas at 2x is ~4 MP.
    max_sketch_pixels: int = Field(default=8_000_000, ge=1)
    # The whole body of one upload request; 0: max_upload_bytes * max_files_per_request,
    # capped at 512 MB (the body is refused while it streams in, past this many bytes).
    max_request_bytes: int = Field(default=0, ge=0)

    # Internal services; empty: the host/port of their own config sections.
    catalog_url: str = ""
    index_url: str = ""
    embedding_url: str = ""
    segmentation_url: str = ""
    upstream_timeout_s: float = Field(default=60.0, gt=0)
    upstream_attempts: int = Field(default=3, ge=1)

    # Search results are over-fetched from the index to make up for rows filtered out.
    search_overfetch: int = Field(default=10, ge=0)
    max_k: int = Field(default=200, ge=1)
    job_poll_s: float = Field(default=0.5, gt=0)

    # The built web app; empty: web/dist of the checkout.
    web_dist: str = ""

    def require_jwt_secret(self) -> str:
        """The signing secret, refusing an empty or short one: there is no default."""
        secret = self.jwt_secret.get_secret_value()
        if len(secret) < MIN_JWT_SECRET:
            raise ValueError(
                f"IMGSEARCH_GATEWAY_JWT_SECRET is not set (or shorter than {MIN_JWT_SECRET} "
                "characters): it signs the login tokens. Generate one: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))' "
                "(or set gateway.jwt_secret in config.yaml; `imgsearch up` writes one into "
                "$IMGSEARCH_DATA_DIR/secrets.env)"
            )
        return secret

    @property
    def request_limit(self) -> int:
        if self.max_request_bytes:
            return self.max_request_bytes
        return min(self.max_upload_bytes * self.max_files_per_request, 512 * 2**20)

    @property
    def search_body_limit(self) -> int:
        # One image plus the form fields around it (prompts may carry a previous 256x256
        # float32 low-res mask: about 350 KB in base64).
        return self.max_upload_bytes + 1024 * 1024

    def urls(self) -> dict[str, str]:
        """Base URL of every internal service the gateway calls."""
        return {
            "catalog": peer_url("catalog", self.catalog_url),
            "index": peer_url("index", self.index_url),
            "embedding": peer_url("embedding", self.embedding_url),
            "segmentation": peer_url("segmentation", self.segmentation_url),
        }

    @property
    def index_max_k(self) -> int:
        """The most hits the gateway may ask the index for (the index's own `max_k`)."""
        return _IndexLimits().max_k

    @property
    def web_dist_dir(self) -> Path:
        return Path(self.web_dist) if self.web_dist else REPO_ROOT / "web" / "dist"
