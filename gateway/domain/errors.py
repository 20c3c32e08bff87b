"""What went wrong at a provider, classified for the pipeline.

ProviderError                   raised by every provider package, never a provider SDK's own
 ├── kind="transient"           retry later with backoff (429, 5xx, SMTP 4xx, connect errors);
 │                              the provider did not take the message, so another may
 ├── kind="permanent"           fail now with the reason (invalid number, unsubscribed, 5xx)
 ├── kind="configuration"       the settings are wrong (bad token, auth failure)
 └── kind="unknown"             the request left and no answer came back: never resend
                                blindly (nor through another provider), reconcile first
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["transient", "permanent", "configuration", "unknown"]


class ProviderError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        suppress: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.code = code
        self.retry_after = retry_after
        # a reason to add the recipient to the tenant's suppression list (e.g. "hard_bounce")
        self.suppress = suppress
