"""The names of the events Nudgeflow emits itself and the engagement events the engine reads.

Segment's email and push spec names where Segment has one, Nudgeflow's own ("Message ...")
for what the dispatcher records. They are spelled here and only here: the engine recognizes
engagement by exact string, so a name spelled twice could drift apart and silently break
"branch on opened". Every module that emits or reads one imports its constant.
"""

from __future__ import annotations

from typing import Final

# --- what the dispatcher records for each message (its outcome) ----------------------------------
MESSAGE_DELIVERED: Final = "Message Delivered"
MESSAGE_SENT: Final = "Message Sent"
MESSAGE_FAILED: Final = "Message Failed"
MESSAGE_SUPPRESSED: Final = "Message Suppressed"
MESSAGE_LOGGED: Final = "Message Logged"

# --- email (Segment's email spec) ----------------------------------------------------------------
EMAIL_DELIVERED: Final = "Email Delivered"
EMAIL_OPENED: Final = "Email Opened"
EMAIL_LINK_CLICKED: Final = "Email Link Clicked"
EMAIL_BOUNCED: Final = "Email Bounced"
EMAIL_MARKED_AS_SPAM: Final = "Email Marked as Spam"
UNSUBSCRIBED: Final = "Unsubscribed"
SUBSCRIPTION_PREFERENCES_UPDATED: Final = "Subscription Preferences Updated"

# --- push (Segment's push spec, and Nudgeflow's Web Push subscription reports) -------------------
PUSH_DELIVERED: Final = "Push Delivered"
PUSH_OPENED: Final = "Push Opened"
PUSH_CLICKED: Final = "Push Clicked"
PUSH_NOTIFICATION_RECEIVED: Final = "Push Notification Received"
PUSH_NOTIFICATION_TAPPED: Final = "Push Notification Tapped"
PUSH_SUBSCRIBED: Final = "Push Subscribed"
PUSH_UNSUBSCRIBED: Final = "Push Unsubscribed"

# --- Segment's mobile lifecycle: an app brought to the foreground (send-time optimization counts it) ----
APPLICATION_OPENED: Final = "Application Opened"

# --- every change of a person's consent (Nudgeflow's own: Segment's "Segment Consent Preference
# Updated" is about cookie and data-use categories, not messaging) ---------------------------------
CONSENT_UPDATED: Final = "Consent Updated"

# --- what the engine records when a person's segment membership changes ---------------------------
SEGMENT_ENTERED: Final = "Segment Entered"
SEGMENT_EXITED: Final = "Segment Exited"

# The events Nudgeflow appends to event logs itself.
EMITTED: Final[frozenset[str]] = frozenset(
    {
        MESSAGE_DELIVERED,
        MESSAGE_SENT,
        MESSAGE_FAILED,
        MESSAGE_SUPPRESSED,
        MESSAGE_LOGGED,
        EMAIL_OPENED,
        EMAIL_LINK_CLICKED,
        EMAIL_BOUNCED,
        EMAIL_MARKED_AS_SPAM,
        UNSUBSCRIBED,
        SUBSCRIPTION_PREFERENCES_UPDATED,
        CONSENT_UPDATED,
        PUSH_DELIVERED,
        PUSH_CLICKED,
        PUSH_SUBSCRIBED,
        PUSH_UNSUBSCRIBED,
        SEGMENT_ENTERED,
        SEGMENT_EXITED,
    }
)

# Every name spelled in this module: the emitted ones and those only sent in by senders' SDKs.
ALL: Final[frozenset[str]] = EMITTED | {
    EMAIL_DELIVERED,
    PUSH_OPENED,
    PUSH_NOTIFICATION_RECEIVED,
    PUSH_NOTIFICATION_TAPPED,
    APPLICATION_OPENED,
}
