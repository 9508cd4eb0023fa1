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
    # How a reason says it (see leadscore.reasons): "Pricing page: visited 3 times in the last 7 days",
    # "No pricing-page visit in the last 90 days". ``many`` holds "{n}"; ``one`` is the singular.
    label: str = ""
    one: str = ""
    many: str = ""
    absent: str = ""


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("email_open", FIRST_TOUCH, "opened {n} marketing emails", "email opens",
              "Marketing emails", "opened 1 email", "opened {n} emails", "No marketing email opened"),
    EventType("email_click", FIRST_TOUCH, "clicked {n} marketing emails", "email clicks",
              "Email clicks", "clicked through 1 email", "clicked through {n} emails", "No email clicked"),
    EventType("web_visit", FIRST_TOUCH, "visited the website {n} times", "website visits",
              "Website", "visited once", "visited {n} times", "No website visit"),
    EventType("newsletter_signup", FIRST_TOUCH, "signed up for the newsletter {n} times", "newsletter sign-ups",
              "Newsletter", "signed up", "signed up {n} times", "No newsletter sign-up"),
    EventType("social_follow", FIRST_TOUCH, "followed us on social media {n} times", "social follows",
              "Social media", "followed us", "followed us {n} times", "No social-media follow"),
    EventType("form_fill", MID_FUNNEL, "filled in {n} forms", "form fills",
              "Forms", "filled in 1 form", "filled in {n} forms", "No form fill"),
    EventType("webinar_register", MID_FUNNEL, "registered for {n} webinars", "webinar registrations",
              "Webinar sign-ups", "registered for 1 webinar", "registered for {n} webinars", "No webinar registration"),
    EventType("webinar_attend", MID_FUNNEL, "attended {n} webinars", "webinar attendance",
              "Webinars", "attended 1 webinar", "attended {n} webinars", "No webinar attended"),
    EventType("content_download", MID_FUNNEL, "downloaded {n} pieces of content", "content downloads",
              "Content", "downloaded 1 piece", "downloaded {n} pieces", "No content downloaded"),
    EventType("pricing_page", LATE_FUNNEL, "visited the pricing page {n} times", "pricing-page visits",
              "Pricing page", "visited once", "visited {n} times", "No pricing-page visit"),
    EventType("demo_request", LATE_FUNNEL, "requested a demo {n} times", "demo requests",
              "Demo", "requested a demo", "requested a demo {n} times", "No demo request"),
    EventType("quote_form", LATE_FUNNEL, "asked for a quote {n} times", "quote requests",
              "Quote", "asked for a quote", "asked for a quote {n} times", "No quote request"),
    EventType("careers_page", NEGATIVE, "visited the careers page {n} times", "careers-page visits",
              "Careers page", "visited once", "visited {n} times", "No careers-page visit"),
    EventType("unsubscribe", NEGATIVE, "unsubscribed from emails {n} times", "unsubscribes",
              "Emails", "unsubscribed", "unsubscribed {n} times", "No unsubscribe"),
    EventType("onboarding_session", POST_SALE, "attended {n} onboarding sessions", "onboarding sessions",
              "Onboarding", "attended 1 session", "attended {n} sessions", "No onboarding session"),
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
