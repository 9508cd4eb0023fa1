"""The event vocabulary of the data contract: which behaviours exist, their funnel stage, and how a
marketer says them. Contract, synthetic data and features all read this one table."""

from __future__ import annotations

from dataclasses import dataclass

# Funnel stages in the order a buyer moves through them. `negative` and `post_sale` are not stages a
# lead progresses through: negative signals lower intent, post-sale events only exist after a win.
FIRST_TOUCH, MID_FUNNEL, LATE_FUNNEL, NEGATIVE, POST_SALE = (
    "first_touch",
    "mid_funnel",
    "late_funnel",
    "negative",
    "post_sale",
)
STAGE_RANK = {NEGATIVE: 0, FIRST_TOUCH: 1, MID_FUNNEL: 2, LATE_FUNNEL: 3}


@dataclass(frozen=True)
class EventType:
    name: str
    stage: str
    phrase: str  # "{n}" is the count: "visited the pricing page {n} times"
    noun: str  # short label for decayed-engagement sentences


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("email_open", FIRST_TOUCH, "opened {n} marketing emails", "email opens"),
    EventType("email_click", FIRST_TOUCH, "clicked {n} marketing emails", "email clicks"),
    EventType("web_visit", FIRST_TOUCH, "visited the website {n} times", "website visits"),
    EventType("newsletter_signup", FIRST_TOUCH, "signed up for the newsletter {n} times", "newsletter sign-ups"),
    EventType("social_follow", FIRST_TOUCH, "followed us on social media {n} times", "social follows"),
    EventType("form_fill", MID_FUNNEL, "filled in {n} forms", "form fills"),
    EventType("webinar_register", MID_FUNNEL, "registered for {n} webinars", "webinar registrations"),
    EventType("webinar_attend", MID_FUNNEL, "attended {n} webinars", "webinar attendance"),
    EventType("content_download", MID_FUNNEL, "downloaded {n} pieces of content", "content downloads"),
    EventType("pricing_page", LATE_FUNNEL, "visited the pricing page {n} times", "pricing-page visits"),
    EventType("demo_request", LATE_FUNNEL, "requested a demo {n} times", "demo requests"),
    EventType("quote_form", LATE_FUNNEL, "asked for a quote {n} times", "quote requests"),
    EventType("careers_page", NEGATIVE, "visited the careers page {n} times", "careers-page visits"),
    EventType("unsubscribe", NEGATIVE, "unsubscribed from emails {n} times", "unsubscribes"),
    EventType("onboarding_session", POST_SALE, "attended {n} onboarding sessions", "onboarding sessions"),
)
EVENT_TYPE_NAMES: tuple[str, ...] = tuple(e.name for e in EVENT_TYPES)
BY_NAME: dict[str, EventType] = {e.name: e for e in EVENT_TYPES}

# Post-sale events are valid input but never features: before a win they cannot happen, so a
# feature built on them could only ever leak the outcome.
FEATURE_EVENT_TYPES: tuple[EventType, ...] = tuple(e for e in EVENT_TYPES if e.stage != POST_SALE)

OUTCOMES = ("won", "lost", "open")

# Consumer mailbox providers: a lead writing from one of these is not identifiable as a company.
FREE_MAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com",
    "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.com", "gmx.de",
    "web.de", "yandex.ru", "mail.ru", "qq.com", "163.com", "proton.me", "protonmail.com",
    "zoho.com", "rediffmail.com", "libero.it", "orange.fr", "free.fr", "t-online.de",
)
