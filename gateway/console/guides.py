"""The short guides the channel pages show: call forwarding per French operator (phone) and
the SMTP presets (email).

Call forwarding: the four operators' mobile networks take the GSM codes — `*21*<number>#`
forwards every call, `**21*<number>#` registers the number and forwards (what a line that
refuses the first form expects), `#21#` stops forwarding, `*#21#` shows its state. Box lines
(Livebox, SFR Box, Bbox, Freebox) set forwarding in the operator's customer area.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ForwardingGuide:
    operator: str
    unconditional: str  # `{number}` is the number to forward to
    register: str
    cancel: str
    status: str


_GSM = ("*21*{number}#", "**21*{number}#", "#21#", "*#21#")
FORWARDING = tuple(
    ForwardingGuide(name, *_GSM) for name in ("Orange", "SFR", "Bouygues Telecom", "Free")
)


@dataclass(frozen=True)
class SmtpPreset:
    id: str
    name: str
    host: str
    port: int
    security: str
    username: str | None  # None: the mailbox address
    hint: str  # translation key of the one-line hint


EMAIL_PRESETS = (
    SmtpPreset("gmail", "Gmail", "smtp.gmail.com", 587, "starttls", None, "email.hint_gmail"),
    SmtpPreset(
        "outlook", "Outlook", "smtp.office365.com", 587, "starttls", None, "email.hint_outlook"
    ),
    SmtpPreset(
        "sendgrid",
        "SendGrid",
        "smtp.sendgrid.net",
        587,
        "starttls",
        "apikey",
        "email.hint_sendgrid",
    ),
)
