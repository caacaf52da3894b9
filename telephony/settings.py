"""The one settings class: environment variables or ``.env``, names fixed by DESIGN.md.

Nothing is required to start: with no OpenAI key the scripted intake answers, with no
Salesforce credentials the embedded local CRM keeps the records, and the database
defaults to a SQLite file in the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration. Secrets are ``SecretStr`` and never logged."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    public_base_url: str = "http://localhost:8080"

    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_api_base_url: str = "https://api.twilio.com"
    # The numbers' "Primary handler fails" URL (a voicemail TwiML Bin); default: ours.
    twilio_fallback_url: str = ""

    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str = "https://api.openai.com/v1"
    openai_realtime_model: str = "gpt-realtime"
    openai_summary_model: str = "gpt-4o-mini"
    openai_voice: str = "alloy"
    openai_tts_model: str = "gpt-4o-mini-tts"

    salesforce_login_url: str = ""
    salesforce_client_id: str = ""
    salesforce_client_secret: SecretStr = SecretStr("")
    salesforce_username: str = ""
    salesforce_private_key_file: Path | None = None
    salesforce_access_token: SecretStr = SecretStr("")
    salesforce_instance_url: str = ""
    salesforce_api_version: str = "62.0"
    salesforce_timeout_seconds: float = 10.0

    database_url: str = "sqlite:///receptionist.db"
    businesses_file: Path | None = None

    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = ""
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_timeout_seconds: float = 15.0

    log_format: Literal["text", "json"] = "text"

    staff_username: str = "staff"
    staff_password_hash: SecretStr = SecretStr("")

    delivery_retry_base_seconds: Annotated[float, Field(gt=0)] = 2.0
    delivery_rate_limit_seconds: Annotated[float, Field(gt=0)] = 300.0
    delivery_max_attempts: Annotated[int, Field(ge=1)] = 15
    delivery_lease_seconds: Annotated[float, Field(gt=0)] = 120.0
    delivery_concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    """CRM deliveries a process makes at once (never two for one caller)."""

    max_call_seconds: Annotated[int, Field(ge=30)] = 1800
    recovery_idle_seconds: Annotated[float, Field(gt=0)] = 300.0
    reconcile_interval_seconds: Annotated[float, Field(ge=0)] = 900.0
    max_frame_bytes: Annotated[int, Field(ge=1024)] = 65536
    realtime_audio_batch_frames: Annotated[int, Field(ge=1, le=10)] = 1
    """Caller frames (20 ms each) sent to the model per message: fewer messages, later audio."""

    @field_validator("businesses_file", "salesforce_private_key_file", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        """``BUSINESSES_FILE=`` (left empty, as in .env.example) means "not set"."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # Security limits (README "Security model").
    webhook_max_bytes: Annotated[int, Field(ge=1024)] = 65536
    stream_token_ttl_seconds: Annotated[int, Field(ge=10)] = 300
    outbound_sms_per_number_per_hour: Annotated[int, Field(ge=1)] = 10
    outbound_sms_per_business_per_hour: Annotated[int, Field(ge=1)] = 60
    # The business's own on-call phone (alerts, and warm transfers counted apart): not
    # caller-facing, so never on the OUTBOUND_SMS_* budget.
    emergency_alerts_per_business_per_hour: Annotated[int, Field(ge=1)] = 120
    personal_data_retention_days: Annotated[int, Field(ge=0)] = 30
    api_docs_enabled: bool = False

    @property
    def openai_configured(self) -> bool:
        return bool(self.openai_api_key.get_secret_value())

    @property
    def salesforce_configured(self) -> bool:
        if self.salesforce_access_token.get_secret_value() and self.salesforce_instance_url:
            return True
        if not self.salesforce_login_url or not self.salesforce_client_id:
            return False
        return bool(self.salesforce_client_secret.get_secret_value()) or bool(
            self.salesforce_username and self.salesforce_private_key_file
        )

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token.get_secret_value())

    def public_url(self, path: str) -> str:
        """The URL Twilio used to reach ``path`` (what signatures are computed over)."""
        return self.public_base_url.rstrip("/") + path

    def public_ws_url(self, path: str) -> str:
        base = self.public_base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://") + path
        return "ws://" + base.removeprefix("http://") + path


__all__ = ["Settings"]
